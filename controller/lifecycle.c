/* lifecycle.c - expiry and eviction (lifecycle.h). */
#include "lifecycle.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "denied.h"
#include "error.h"
#include "log.h"
#include "phase.h"
#include "warm.h"

#define WRITES_MAX 16 /* lifecycle writes in flight */

struct thaw_lifecycle {
  uv_loop_t *loop;
  thaw_lifecycle_opts_t o;
  uv_timer_t tick;
  thaw_store_t *busy;     /* name -> a write or delete of ours in flight */
  thaw_store_t *releasing;/* name -> its manifests are being deleted */
  thaw_denied_t denied;
  thaw_metric_t *expired; /* thaw_expired_total{reason} */
  unsigned inflight;
  int active, closing, timer_closed;
};

typedef struct {
  thaw_lifecycle_t *l;
  char name[254];
  const char *reason; /* deletes: thaw_expired_total's */
  char image[600];
} op_t;

static void release(thaw_lifecycle_t *l) {
  thaw_store_free(l->busy);
  thaw_store_free(l->releasing);
  free(l);
}

/* Seconds the object has been unused, from status (use.h keeps lastUsedAt
 * current), else cachedAt, else its creation. */
static time_t idle_since(const thaw_cirec_t *c) {
  if (c->last_used > 0)
    return c->last_used;
  return c->cached_at > 0 ? c->cached_at : c->created;
}

static uint64_t expire_after_ms(const thaw_lifecycle_t *l,
                                const thaw_cirec_t *c) {
  return c->expire_after_ms > 0 ? c->expire_after_ms
                                : l->o.cfg->expire_after_ms;
}

static int in_use(const thaw_lifecycle_t *l, const thaw_cirec_t *c) {
  thaw_use_count_t n = thaw_use_get(l->o.use, c->norm);
  return n.pods + n.templates > 0;
}

/* --- writes ------------------------------------------------------------ */

static void op_done(op_t *op, const thaw_kube_result_t *res, const char *what) {
  thaw_lifecycle_t *l = op->l;
  l->inflight--;
  thaw_store_remove(l->busy, op->name, NULL, NULL);
  int quiet = res->err != THAW_ECANCELED &&
              thaw_denied_note(&l->denied, res->err, "lifecycle", what,
                               "cachedimages", res->message);
  /* A conflict means the object changed: the next tick decides again. */
  if (res->err != 0 && res->err != THAW_ECANCELED &&
      res->err != THAW_ECONFLICT && res->err != THAW_ENOTFOUND && !quiet)
    thaw_warn("lifecycle write failed", "name", op->name, "verb", what,
              "error", thaw_err_name(res->err), "message", res->message);
}

static void maybe_release(thaw_lifecycle_t *l) {
  if (l->closing && l->timer_closed && l->inflight == 0)
    release(l);
}

static void on_patched(const thaw_kube_result_t *res, void *data) {
  op_t *op = data;
  thaw_lifecycle_t *l = op->l;
  op_done(op, res, "patch");
  free(op);
  maybe_release(l);
}

static op_t *op_new(thaw_lifecycle_t *l, const char *name) {
  op_t *op = calloc(1, sizeof *op);
  if (op == NULL)
    return NULL;
  op->l = l;
  snprintf(op->name, sizeof op->name, "%s", name);
  return op;
}


/* A status merge patch with the object's resourceVersion as precondition. */
static void patch_status(thaw_lifecycle_t *l, const char *name, uint64_t rv,
                         cJSON *status) {
  cJSON *body = cJSON_CreateObject();
  cJSON *md = body ? cJSON_AddObjectToObject(body, "metadata") : NULL;
  op_t *op = md ? op_new(l, name) : NULL;
  if (op == NULL) {
    cJSON_Delete(body);
    cJSON_Delete(status);
    return;
  }
  char rvs[24];
  snprintf(rvs, sizeof rvs, "%llu", (unsigned long long)rv);
  cJSON_AddStringToObject(md, "resourceVersion", rvs);
  cJSON_AddItemToObject(body, "status", status);
  thaw_kube_opts_t ko = {.name = name, .subresource = "status",
                         .field_manager = "thaw-controller"};
  if (thaw_kube_merge_patch(l->o.kube, &thaw_kube_cachedimages, &ko, body,
                            on_patched, op) != 0) {
    free(op);
  } else {
    l->inflight++;
    thaw_store_put(l->busy, name, 0, l, NULL);
  }
  cJSON_Delete(body);
}


static void to_expiring(thaw_lifecycle_t *l, const char *name, uint64_t rv,
                        const thaw_cirec_t *c, int evicted, time_t now) {
  char msg[700];
  time_t at = now + (time_t)(l->o.cfg->expire_grace_ms / 1000);
  if (evicted)
    snprintf(msg, sizeof msg,
             "evicted: the cache is over --max-cache-bytes and %s is its "
             "least recently used image; deleted unless used before expiresAt",
             c->norm);
  else
    snprintf(msg, sizeof msg,
             "unused since %ld s; deleted unless used before expiresAt",
             (long)(now - idle_since(c)));
  cJSON *st = cJSON_CreateObject();
  if (st == NULL)
    return;
  cJSON_AddStringToObject(st, "phase", "Expiring");
  thaw_cirec_add_time(st, "expiresAt", at);
  thaw_cirec_add_ready(st, 0, evicted ? "Evicted" : "Unused", msg);
  patch_status(l, name, rv, st);
  thaw_events_emit(l->o.events, name, c->uid, "Normal", "Expiring", msg);
  thaw_info("expiring", "name", name, "reason", evicted ? "evicted" : "unused");
}

static void to_ready(thaw_lifecycle_t *l, const char *name, uint64_t rv,
                     const thaw_cirec_t *c) {
  int cached = c->digest[0] != '\0';
  cJSON *st = cJSON_CreateObject();
  if (st == NULL)
    return;
  cJSON_AddStringToObject(st, "phase", cached ? "Ready" : "Pending");
  cJSON_AddNullToObject(st, "expiresAt");
  const char *msg = "in use again while Expiring: kept";
  thaw_cirec_add_ready(st, cached, cached ? "InUse" : "Warming", msg);
  patch_status(l, name, rv, st);
  thaw_events_emit(l->o.events, name, c->uid, "Normal", "Kept", msg);
  thaw_info("in use again: kept", "name", name);
}

/* --- deletion ---------------------------------------------------------- */

static void on_deleted(const thaw_kube_result_t *res, void *data) {
  op_t *op = data;
  thaw_lifecycle_t *l = op->l;
  if (res->err == 0 || res->err == THAW_ENOTFOUND) {
    thaw_store_remove(l->releasing, op->name, NULL, NULL);
    if (res->err == 0) {
      const char *v[] = {op->reason};
      thaw_metric_inc(l->expired, v);
      char msg[700];
      snprintf(msg, sizeof msg, "%s deleted from the cache (%s)", op->image,
               op->reason);
      thaw_events_emit(l->o.events, op->name, "", "Normal", "Expired", msg);
      thaw_info("expired", "name", op->name, "reason", op->reason);
    }
  }
  op_done(op, res, "delete");
  free(op);
  maybe_release(l);
}

static void delete_object(thaw_lifecycle_t *l, const char *name, uint64_t rv,
                          const thaw_cirec_t *c) {
  op_t *op = op_new(l, name);
  if (op == NULL)
    return;
  op->reason = (c->flags & THAW_CI_EVICTED) ? "evicted" : "unused";
  snprintf(op->image, sizeof op->image, "%s", c->image);
  char rvs[24];
  snprintf(rvs, sizeof rvs, "%llu", (unsigned long long)rv);
  thaw_kube_opts_t ko = {.name = name, .resource_version = rvs};
  if (thaw_kube_delete(l->o.kube, &thaw_kube_cachedimages, &ko, on_deleted,
                       op) != 0) {
    free(op);
    return;
  }
  l->inflight++;
  thaw_store_put(l->busy, name, 0, l, NULL);
}

/* Past expiresAt and unused: the manifests only it holds leave the cache
 * (the inventory deletes them when nothing may push there), then the
 * object goes. */
static void expire_now(thaw_lifecycle_t *l, const char *name, uint64_t rv,
                       const thaw_cirec_t *c) {
  if (thaw_store_get(l->releasing, name, NULL) == NULL) {
    thaw_inventory_remove(l->o.inv, name);
    thaw_store_put(l->releasing, name, 0, l, NULL);
  }
  if (thaw_inventory_pending(l->o.inv, name))
    return;
  delete_object(l, name, rv, c);
}

/* --- eviction ---------------------------------------------------------- */

typedef struct {
  const char *name;
  time_t idle;
} cand_t;

static int by_idle(const void *a, const void *b) {
  const cand_t *x = a, *y = b;
  if (x->idle != y->idle)
    return x->idle < y->idle ? -1 : 1;
  return strcmp(x->name, y->name);
}

/* Over the bound: unused Ready images, least recently used first, until
 * what their removal actually frees (blobs no other image holds) brings
 * the cache under the bound. Images already Expiring count as freed. */
static void evict(thaw_lifecycle_t *l, const thaw_store_t *cis, time_t now) {
  uint64_t max = l->o.cfg->max_cache_bytes;
  int64_t size = thaw_inventory_unique_bytes(l->o.inv);
  thaw_inventory_stats_t st;
  thaw_inventory_stats(l->o.inv, &st);
  /* Unread trees count their sizeBytes, so the sum runs high until all
   * are read: decide on exact figures only. */
  if (max == 0 || size <= (int64_t)max || st.unloaded > 0)
    return;
  size_t n = thaw_store_count(cis), nc = 0, ne = 0;
  cand_t *cands = calloc(n + 1, sizeof *cands);
  const char **set = calloc(n + 1, sizeof *set);
  if (cands == NULL || set == NULL) {
    free(cands);
    free(set);
    return;
  }
  size_t pos = 0;
  const char *name;
  void *rec;
  while (thaw_store_next(cis, &pos, &name, NULL, &rec)) {
    const thaw_cirec_t *c = rec;
    if (c->phase == THAW_CI_EXPIRING) {
      set[ne++] = name;
      continue;
    }
    thaw_phase_facts_t f = {.phase = c->phase,
                            .retain = (c->flags & THAW_CI_RETAIN) != 0,
                            .used = in_use(l, c),
                            .settled = thaw_use_settled(l->o.use, c),
                            .over_bound = 1};
    if (thaw_phase_decide(THAW_EV_TICK, &f) != THAW_ACT_EVICT ||
        thaw_store_get(l->busy, name, NULL) ||
        thaw_reconciler_job_running(l->o.rec, name) ||
        !thaw_inventory_loaded(l->o.inv, name))
      continue;
    cands[nc++] = (cand_t){name, idle_since(c)};
  }
  qsort(cands, nc, sizeof *cands, by_idle);
  int64_t freed = thaw_inventory_freed_bytes(l->o.inv, set, ne);
  for (size_t i = 0; i < nc && size - freed > (int64_t)max; i++) {
    set[ne++] = cands[i].name;
    freed = thaw_inventory_freed_bytes(l->o.inv, set, ne);
    uint64_t rv = 0;
    const thaw_cirec_t *c = thaw_store_get(cis, cands[i].name, &rv);
    if (l->inflight < WRITES_MAX)
      to_expiring(l, cands[i].name, rv, c, 1, now);
  }
  free(cands);
  free(set);
}

/* --- the tick ---------------------------------------------------------- */

static void on_tick(uv_timer_t *t) {
  thaw_lifecycle_t *l = t->data;
  if (!l->active || !thaw_use_ready(l->o.use))
    return;
  const thaw_store_t *cis = thaw_reconciler_store(l->o.rec);
  time_t now = time(NULL);
  size_t pos = 0;
  const char *name;
  uint64_t rv;
  void *rec;
  while (thaw_store_next(cis, &pos, &name, &rv, &rec)) {
    const thaw_cirec_t *c = rec;
    if (l->inflight >= WRITES_MAX)
      break;
    if (thaw_store_get(l->busy, name, NULL) ||
        thaw_reconciler_job_running(l->o.rec, name) || c->norm[0] == '\0')
      continue;
    int deleting = thaw_store_get(l->releasing, name, NULL) != NULL;
    thaw_phase_facts_t f = {
        .phase = c->phase,
        .retain = (c->flags & THAW_CI_RETAIN) != 0,
        .used = in_use(l, c),
        .settled = thaw_use_settled(l->o.use, c),
        .idle_expired =
            (uint64_t)(now - idle_since(c)) * 1000u >= expire_after_ms(l, c),
        .has_expiry = c->expires_at != 0,
        .expiry_passed = c->expires_at != 0 && now >= c->expires_at,
        .deleting = deleting,
    };
    switch (thaw_phase_decide(THAW_EV_TICK, &f)) {
    case THAW_ACT_EXPIRE: /* also an Expiring object without expiresAt */
      to_expiring(l, name, rv, c, (c->flags & THAW_CI_EVICTED) != 0, now);
      break;
    case THAW_ACT_KEEP:
      to_ready(l, name, rv, c);
      break;
    case THAW_ACT_DELETE:
      expire_now(l, name, rv, c);
      break;
    default: /* eviction picks its candidates below, in LRU order */
      break;
    }
  }
  evict(l, cis, now);
}

/* --- public ------------------------------------------------------------ */

int thaw_lifecycle_has_room(const thaw_lifecycle_t *l, char *msg, size_t cap) {
  uint64_t max = l->o.cfg->max_cache_bytes;
  int64_t size = thaw_inventory_unique_bytes(l->o.inv);
  if (max == 0 || size < (int64_t)max)
    return 1;
  snprintf(msg, cap,
           "cache full: %lld of %llu bytes (--max-cache-bytes) used and no "
           "unused image to evict; waiting for space (pods pull from "
           "upstream meanwhile)",
           (long long)size, (unsigned long long)max);
  return 0;
}

int thaw_lifecycle_releasing(const thaw_lifecycle_t *l, const char *name) {
  return thaw_store_get(l->releasing, name, NULL) != NULL;
}

int thaw_lifecycle_may_delete(const thaw_lifecycle_t *l, const char *repo) {
  if (l->o.gc_running && l->o.gc_running(l->o.gc_data))
    return 0;
  if (thaw_reconciler_busy(l->o.rec, repo))
    return 0;
  const thaw_store_t *cis = thaw_reconciler_store(l->o.rec);
  size_t pos = 0;
  void *rec;
  char mine[THAW_IMGREF_STR_MAX + 1];
  while (thaw_store_next(cis, &pos, NULL, NULL, &rec)) {
    const thaw_cirec_t *c = rec;
    /* Pending or Warming may push any moment; Pending for want of room
     * does not until a job starts (busy above). */
    if ((c->phase != THAW_CI_NONE && c->phase != THAW_CI_PENDING &&
         c->phase != THAW_CI_WARMING) ||
        (c->phase == THAW_CI_PENDING && (c->flags & THAW_CI_FULL)))
      continue;
    /* a warm may push under either path: private is learned mid-warm */
    if (c->norm[0] == '\0' ||
        thaw_warm_cache_repo_of(c->norm, 0, mine, sizeof mine) != 0 ||
        strcmp(mine, repo) == 0 ||
        thaw_warm_cache_repo_of(c->norm, 1, mine, sizeof mine) != 0 ||
        strcmp(mine, repo) == 0)
      return 0; /* unparsable: cannot tell, so no */
  }
  return 1;
}

static int register_metrics(thaw_lifecycle_t *l, thaw_metrics_t *m) {
  static const char *const reason[] = {"reason"};
  l->expired = thaw_metrics_counter(
      m, "thaw_expired_total", "CachedImages expired or evicted, by reason.",
      1, reason);
  thaw_metric_t *max = thaw_metrics_gauge(
      m, "thaw_cache_max_bytes",
      "--max-cache-bytes: the bound that triggers eviction (0: unbounded).",
      0, NULL);
  if (l->expired == NULL || max == NULL)
    return THAW_ENOMEM;
  const char *reasons[] = {"unused", "evicted"};
  for (int i = 0; i < 2; i++) /* both series from the start */
    thaw_metric_add(l->expired, &reasons[i], 0);
  thaw_metric_set(max, NULL, (double)l->o.cfg->max_cache_bytes);
  return 0;
}

int thaw_lifecycle_new(uv_loop_t *loop, const thaw_lifecycle_opts_t *o,
                       thaw_lifecycle_t **out) {
  *out = NULL;
  thaw_lifecycle_t *l = calloc(1, sizeof *l);
  if (l == NULL)
    return THAW_ENOMEM;
  l->loop = loop;
  l->o = *o;
  if (l->o.tick_ms == 0)
    l->o.tick_ms = 1000;
  l->busy = thaw_store_new(NULL, NULL);
  l->releasing = thaw_store_new(NULL, NULL);
  uv_timer_init(loop, &l->tick);
  l->tick.data = l;
  if (l->busy == NULL || l->releasing == NULL ||
      (o->metrics && register_metrics(l, o->metrics) != 0)) {
    thaw_lifecycle_free(l);
    return THAW_ENOMEM;
  }
  *out = l;
  return 0;
}

void thaw_lifecycle_set_active(thaw_lifecycle_t *l, int leading) {
  l->active = leading != 0;
  if (l->active) {
    uv_timer_start(&l->tick, on_tick, l->o.tick_ms, l->o.tick_ms);
  } else {
    uv_timer_stop(&l->tick);
    /* A new leader starts over from status. */
    thaw_store_t *fresh = thaw_store_new(NULL, NULL);
    if (fresh != NULL) {
      thaw_store_free(l->releasing);
      l->releasing = fresh;
    }
  }
}

static void on_closed(uv_handle_t *h) {
  thaw_lifecycle_t *l = h->data;
  l->timer_closed = 1;
  maybe_release(l);
}

void thaw_lifecycle_free(thaw_lifecycle_t *l) {
  if (l == NULL || l->closing)
    return;
  l->closing = 1;
  l->active = 0;
  uv_timer_stop(&l->tick);
  uv_close((uv_handle_t *)&l->tick, on_closed);
}
