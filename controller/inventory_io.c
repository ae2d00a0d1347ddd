/* inventory_io.c - the cache inventory's requests (inventory.h): manifests
 * wait in a read queue, a retry queue, or their repository's delete queue;
 * the pump starts at most `concurrency` GETs and DELETEs at once, reads
 * first (they unblock deletes), and deletes only in repositories with
 * nothing unread that may_delete allows. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "inventory_internal.h"
#include "log.h"

/* ---- lists ---- */

static void list_push(inv_list_t *l, inv_entry_t *e) {
  e->qnext = NULL;
  e->qprev = l->tail;
  if (l->tail)
    l->tail->qnext = e;
  else
    l->head = e;
  l->tail = e;
  l->n++;
}

static void list_del(inv_list_t *l, inv_entry_t *e) {
  if (e->qprev)
    e->qprev->qnext = e->qnext;
  else
    l->head = e->qnext;
  if (e->qnext)
    e->qnext->qprev = e->qprev;
  else
    l->tail = e->qprev;
  e->qprev = e->qnext = NULL;
  l->n--;
}

static void delrepos_add(thaw_inventory_t *inv, inv_repo_t *r) {
  r->dprev = NULL;
  r->dnext = inv->delrepos;
  if (inv->delrepos)
    inv->delrepos->dprev = r;
  inv->delrepos = r;
}

static void delrepos_del(thaw_inventory_t *inv, inv_repo_t *r) {
  if (r->dprev)
    r->dprev->dnext = r->dnext;
  else
    inv->delrepos = r->dnext;
  if (r->dnext)
    r->dnext->dprev = r->dprev;
  r->dprev = r->dnext = NULL;
}

/* ---- timers ---- */

static void pump(thaw_inventory_t *inv);

static void on_kick(uv_timer_t *t) { pump(t->data); }

void inv_kick(thaw_inventory_t *inv) {
  if (!inv->closing && !uv_is_active((uv_handle_t *)&inv->kick_t))
    uv_timer_start(&inv->kick_t, on_kick, 0, 0);
}

void thaw_inventory_kick(thaw_inventory_t *inv) {
  if (inv)
    inv_kick(inv);
}

static void arm_tick(thaw_inventory_t *inv, uint64_t due);

/* Retries that are due go back to their queue; the next one re-arms. */
static void on_tick(uv_timer_t *t) {
  thaw_inventory_t *inv = t->data;
  uint64_t now = uv_now(inv->loop), next = UINT64_MAX;
  for (inv_entry_t *e = inv->waitq.head, *n; e; e = n) {
    n = e->qnext;
    if (e->next_try <= now)
      inv_settle(inv, e);
    else if (e->next_try < next)
      next = e->next_try;
  }
  if (next != UINT64_MAX)
    arm_tick(inv, next);
  pump(inv);
}

static void arm_tick(thaw_inventory_t *inv, uint64_t due) {
  uint64_t now = uv_now(inv->loop);
  if (inv->closing ||
      (uv_is_active((uv_handle_t *)&inv->tick_t) && inv->tick_due <= due))
    return;
  inv->tick_due = due;
  uv_timer_start(&inv->tick_t, on_tick, due > now ? due - now : 0, 0);
}

void inv_qmove(thaw_inventory_t *inv, inv_entry_t *e, int q) {
  if (e->q == q)
    return;
  switch (e->q) {
  case INV_Q_READ:
    list_del(&inv->readq, e);
    break;
  case INV_Q_WAIT:
    list_del(&inv->waitq, e);
    break;
  case INV_Q_DEL:
    list_del(&e->repo->delq, e);
    if (!e->repo->delq.n)
      delrepos_del(inv, e->repo);
    break;
  }
  e->q = (uint8_t)q;
  switch (q) {
  case INV_Q_READ:
    list_push(&inv->readq, e);
    inv_kick(inv);
    break;
  case INV_Q_WAIT:
    list_push(&inv->waitq, e);
    arm_tick(inv, e->next_try);
    break;
  case INV_Q_DEL:
    if (!e->repo->delq.n)
      delrepos_add(inv, e->repo);
    list_push(&e->repo->delq, e);
    inv_kick(inv);
    break;
  }
}

/* ---- requests ---- */

static void on_answer(const thaw_registry_result_t *res, void *data);

/* A failed read or delete waits 1 s, doubling to 60 s (or Retry-After);
 * the streak's first failure is a warning, the rest debug lines. */
static void fail(thaw_inventory_t *inv, inv_entry_t *e, int del, int err,
                 const char *message, long retry_after) {
  uint64_t b = e->backoff_ms ? (uint64_t)e->backoff_ms * 2 : INV_BACKOFF_MIN_MS;
  if (b > INV_BACKOFF_MAX_MS)
    b = INV_BACKOFF_MAX_MS;
  int first = !e->backoff_ms;
  e->backoff_ms = (uint32_t)b;
  uint64_t delay = b;
  if (retry_after > 0 && (uint64_t)retry_after * 1000 > delay)
    delay = (uint64_t)retry_after * 1000 > INV_RETRY_AFTER_MAX_MS
                ? INV_RETRY_AFTER_MAX_MS
                : (uint64_t)retry_after * 1000;
  e->next_try = uv_now(inv->loop) + delay;
  char digest[72], in[32];
  inv_digest_str(e->node, digest);
  snprintf(in, sizeof in, "%.1fs", (double)delay / 1000);
  thaw_log(first ? THAW_LOG_WARN : THAW_LOG_DEBUG,
           del ? "cache manifest delete failed, retrying"
               : "cache manifest read failed, retrying",
           "repo", e->repo->name, "digest", digest, "error",
           thaw_err_name(err), "message", message, "retry_in", in,
           (char *)NULL);
  inv_settle(inv, e);
}

static int start(thaw_inventory_t *inv, inv_entry_t *e, int del) {
  inv_op_t *op = inv->ops;
  while (op->e)
    op++; /* inflight < concurrency: a slot is free */
  inv_qmove(inv, e, INV_Q_NONE);
  op->e = e;
  op->del = del;
  e->busy = 1;
  inv->inflight++;
  if (del)
    e->repo->deleting++;
  char digest[72];
  inv_digest_str(e->node, digest);
  thaw_registry_target_t t = {.host = inv->host, .repo = e->repo->name};
  int rc = del ? thaw_registry_manifest_delete(inv->reg, &t, digest,
                                               on_answer, op)
               : thaw_registry_manifest_get(inv->reg, &t, digest, 0,
                                            on_answer, op);
  if (rc) { /* the callback never runs */
    op->e = NULL;
    e->busy = 0;
    inv->inflight--;
    if (del)
      e->repo->deleting--;
    fail(inv, e, del, rc, thaw_strerror(rc), 0);
  }
  return rc;
}

static void deleted(thaw_inventory_t *inv, inv_entry_t *e, int status404) {
  char repo[INV_REPO_MAX + 1], digest[72], freed_s[32];
  snprintf(repo, sizeof repo, "%s", e->repo->name);
  inv_digest_str(e->node, digest);
  e->backoff_ms = 0;
  e->next_try = 0;
  int64_t freed = inv_release(inv, e);
  inv->reclaimable += freed;
  snprintf(freed_s, sizeof freed_s, "%" PRId64, freed);
  if (status404)
    thaw_info("cache manifest already deleted (404)", "repo", repo,
              "digest", digest, "freed_bytes", freed_s);
  else
    thaw_info("cache manifest deleted", "repo", repo, "digest", digest,
              "freed_bytes", freed_s);
  inv_settle(inv, e); /* may free it */
  if (inv->o.deleted)
    inv->o.deleted(repo, digest, freed, inv->o.data);
}

static void on_answer(const thaw_registry_result_t *res, void *data) {
  inv_op_t *op = data;
  thaw_inventory_t *inv = op->inv;
  inv_entry_t *e = op->e;
  int del = op->del;
  op->e = NULL;
  e->busy = 0;
  inv->inflight--;
  if (del)
    e->repo->deleting--;
  if (inv->closing) /* thaw_inventory_free frees the rest */
    return;
  inv_kick(inv);
  if (res->err == THAW_ECANCELED) { /* no registry now: again later */
    inv_settle(inv, e);
    return;
  }
  if (del) {
    if (!res->err || res->err == THAW_ENOTFOUND)
      deleted(inv, e, res->err != 0);
    else
      fail(inv, e, 1, res->err, res->message, res->retry_after);
    return;
  }
  char err[256] = "";
  int rc = res->err;
  if (rc == THAW_ENOTFOUND) {
    e->backoff_ms = 0;
    e->next_try = 0;
    inv_absent(inv, e);
    return;
  }
  if (!rc && !(rc = inv_take(inv, e, res, err, sizeof err))) {
    e->backoff_ms = 0;
    e->next_try = 0;
    return;
  }
  fail(inv, e, 0, rc, err[0] ? err : res->message, res->retry_after);
}

static void pump(thaw_inventory_t *inv) {
  if (!inv->reg || inv->closing)
    return;
  unsigned conc = inv->o.concurrency;
  while (inv->inflight < conc && inv->readq.head)
    start(inv, inv->readq.head, 0);
  int held = 0;
  for (inv_repo_t *r = inv->delrepos, *next; r && inv->inflight < conc;
       r = next) {
    next = r->dnext;
    if (r->unread) /* its reads end with a kick */
      continue;
    if (inv->o.may_delete && !inv->o.may_delete(r->name, inv->o.data)) {
      held = 1;
      continue;
    }
    while (inv->inflight < conc && r->delq.head)
      start(inv, r->delq.head, 1); /* may take r out of delrepos */
  }
  if (held)
    arm_tick(inv, uv_now(inv->loop) + INV_POLL_MS);
}

/* ---- registry, lifetime ---- */

static int ours(void *data, void *ctx) {
  const thaw_inventory_t *inv = ctx;
  uintptr_t p = (uintptr_t)data, base = (uintptr_t)inv->ops;
  return p >= base && p < base + inv->o.concurrency * sizeof *inv->ops;
}

void inv_io_cancel(thaw_inventory_t *inv) {
  /* inflight 0: nothing to cancel, and the client may be freed already */
  if (inv->reg && inv->inflight)
    thaw_registry_cancel_if(inv->reg, ours, inv);
}

int thaw_inventory_set_registry(thaw_inventory_t *inv, thaw_registry_t *reg,
                                const char *cache_registry) {
  if (reg && (!cache_registry || !*cache_registry))
    return THAW_EINVAL;
  char *host = reg ? strdup(cache_registry) : NULL;
  inv_io_cancel(inv); /* their manifests go back to the read/delete queues */
  free(inv->host);
  inv->host = host;
  inv->reg = host ? reg : NULL;
  if (reg && !host)
    return THAW_ENOMEM;
  if (reg)
    inv_kick(inv);
  return 0;
}

void inv_io_init(thaw_inventory_t *inv) {
  uv_timer_init(inv->loop, &inv->kick_t); /* cannot fail */
  uv_timer_init(inv->loop, &inv->tick_t);
  inv->kick_t.data = inv->tick_t.data = inv;
  inv->open_handles = 2;
}

static void on_closed(uv_handle_t *h) {
  thaw_inventory_t *inv = h->data;
  if (--inv->open_handles == 0)
    free(inv);
}

void inv_io_close(thaw_inventory_t *inv) {
  uv_close((uv_handle_t *)&inv->kick_t, on_closed);
  uv_close((uv_handle_t *)&inv->tick_t, on_closed);
}
