/* record.c - creates CachedImages off the hot path (record.h).
 *
 * One table, keyed by normalised reference, holds what the recorder is
 * doing or has just done: PENDING (queued, waiting for a retry, or in
 * flight) and DONE (created, found existing, or given up on, within the
 * last RECENT_MS). record() ignores a reference in either state, so a burst
 * of admissions of one cold image makes one POST, and a reference that
 * fails permanently is not retried on every admission. DONE entries sit in
 * a FIFO (they all live RECENT_MS, so it is in expiry order) and are swept
 * by record() itself: no timer. The owner's `exists` callback (the webhook's
 * index, the controller's CachedImage informer) answers for objects that
 * are already there, so only new references cost a request.
 *
 * Queue tuning: 4 creates at once; per-key backoff 200 ms doubling to 60 s;
 * a global bucket of 20 creates/s, burst 50 (an admission storm of new
 * images must not flood the API server); MAX_ATTEMPTS tries, which with that
 * backoff span about 100 s; MAX_PENDING references at most (beyond: dropped;
 * the controller's pod sweep still records them later). */
#include "record.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "denied.h"
#include "error.h"
#include "imgref.h"
#include "log.h"
#include "store.h"
#include "workqueue.h"

/* Defaults of thaw_recorder_opts_t. */
#define CONCURRENCY 4
#define BACKOFF_BASE_MS 200
#define BACKOFF_MAX_MS 60000
#define QPS 20.0
#define BURST 50
#define MAX_ATTEMPTS 10
#define MAX_PENDING 10000
#define RECENT_MS (5 * 60 * 1000)
#define MAX_RECENT 10000 /* DONE entries kept; the oldest go first */
#define DROP_LOG_MS 10000 /* at most one "dropped" line per interval */
#define FIELD_MANAGER "thaw-webhook"

enum { PENDING = 1, DONE = 2 };

typedef struct entry {
  struct entry *prev, *next; /* the DONE FIFO */
  uint64_t expires;          /* DONE: loop ms */
  uint8_t state;
  uint8_t known;    /* the index saw it while PENDING: no request needed */
  uint8_t attempts; /* failed creates so far */
  char key[];
} entry_t;

struct thaw_recorder {
  uv_loop_t *loop;
  thaw_kube_t *kube;
  thaw_recorder_exists_cb exists;
  void *exists_data;
  thaw_workqueue_t *q;
  thaw_store_t *entries; /* key -> entry_t (owned) */
  size_t pending;        /* entries PENDING */
  size_t recent;         /* entries DONE */
  entry_t *head, *tail;  /* DONE, oldest first */
  size_t inflight;       /* create requests not yet called back */
  thaw_recorder_opts_t o; /* o.field_manager points to field_manager */
  char *field_manager;
  thaw_recorder_result_cb cb;
  void *cb_data;
  uint64_t drop_logged_at, drops_unlogged;
  thaw_denied_t denied; /* creates refused (403): logged once */
  int closing;
};

/* One create in flight. */
typedef struct {
  thaw_recorder_t *r;
  thaw_workqueue_token_t *tok;
} req_t;

static void entry_free(void *rec, void *data) {
  (void)data;
  free(rec);
}

static void report(thaw_recorder_t *r, const char *result,
                   const char *normalized) {
  if (r->cb != NULL && !r->closing)
    r->cb(result, normalized, r->cb_data);
}

static int known(const thaw_recorder_t *r, const char *normalized) {
  return r->exists != NULL && r->exists(normalized, r->exists_data);
}

/* --- the DONE FIFO ------------------------------------------------------ */

static void unlink_done(thaw_recorder_t *r, entry_t *e) {
  if (e->prev != NULL)
    e->prev->next = e->next;
  else
    r->head = e->next;
  if (e->next != NULL)
    e->next->prev = e->prev;
  else
    r->tail = e->prev;
  e->prev = e->next = NULL;
  r->recent--;
}

/* Removes e from the table and frees it, whatever its state. */
static void drop_entry(thaw_recorder_t *r, entry_t *e) {
  if (e->state == DONE)
    unlink_done(r, e);
  else
    r->pending--;
  thaw_store_remove(r->entries, e->key, NULL, NULL);
}

/* PENDING -> DONE: remembered for RECENT_MS (or dropped at once when the
 * index already has it; it answers from then on). */
static void mark_done(thaw_recorder_t *r, entry_t *e) {
  if (e->known) {
    drop_entry(r, e);
    return;
  }
  r->pending--;
  e->state = DONE;
  e->expires = uv_now(r->loop) + r->o.recent_ms;
  e->prev = r->tail;
  e->next = NULL;
  if (r->tail != NULL)
    r->tail->next = e;
  else
    r->head = e;
  r->tail = e;
  r->recent++;
  if (r->recent > MAX_RECENT)
    drop_entry(r, r->head);
}

/* Forgets expired DONE entries; each is swept once, so O(1) amortised. */
static void sweep(thaw_recorder_t *r, uint64_t now) {
  while (r->head != NULL && r->head->expires <= now)
    drop_entry(r, r->head);
}

/* --- the worker --------------------------------------------------------- */

static cJSON *make_object(const char *name, const char *image) {
  cJSON *o = cJSON_CreateObject();
  cJSON *meta = cJSON_AddObjectToObject(o, "metadata");
  cJSON *labels = cJSON_AddObjectToObject(meta, "labels");
  cJSON *spec = cJSON_AddObjectToObject(o, "spec");
  if (o == NULL || meta == NULL || labels == NULL || spec == NULL ||
      cJSON_AddStringToObject(o, "apiVersion", "thaw.dev/v1alpha1") == NULL ||
      cJSON_AddStringToObject(o, "kind", "CachedImage") == NULL ||
      cJSON_AddStringToObject(meta, "name", name) == NULL ||
      cJSON_AddStringToObject(labels, "app.kubernetes.io/managed-by",
                              "thaw") == NULL ||
      cJSON_AddStringToObject(spec, "image", image) == NULL) {
    cJSON_Delete(o);
    return NULL;
  }
  return o;
}

/* 4xx answers that another try cannot change. A 403 is not one of them:
 * an operator may fix the RBAC at any time, so it is retried with the
 * per-key backoff like a 5xx (and logged once, not per attempt). */
static int permanent(int err) {
  return err == THAW_EINVALID || err == THAW_EBADREQUEST;
}

/* Ends one attempt on `tok` with error `err` (0: created). */
static void finish(thaw_recorder_t *r, thaw_workqueue_token_t *tok, int err,
                   const char *message, long retry_after) {
  const char *key = thaw_workqueue_token_key(tok);
  entry_t *e = thaw_store_get(r->entries, key, NULL);
  const char *result;
  char why[256];
  snprintf(why, sizeof(why), "%s: %s", thaw_err_name(err),
           message != NULL ? message : "");
  /* AlreadyExists: the create was allowed */
  int quiet = thaw_denied_note(&r->denied, err == THAW_EALREADYEXISTS ? 0 : err,
                               "recorder", "create", "cachedimages", message);
  thaw_workqueue_result_t wq = THAW_WQ_SUCCESS;
  uint64_t after = 0;
  if (err == 0 || err == THAW_EALREADYEXISTS) {
    result = err == 0 ? "created" : "exists";
    thaw_info("cachedimage recorded", "image", key, "result", result);
  } else if (permanent(err) || e == NULL ||
             e->attempts + 1u >= r->o.max_attempts) {
    result = "failed";
    thaw_warn("cachedimage not recorded", "image", key, "result", result,
              "error", why);
  } else {
    result = "retry";
    e->attempts++;
    /* the server said when: 429, or a 5xx with Retry-After */
    if ((err == THAW_ETOOMANY || err == THAW_ESERVER) && retry_after > 0) {
      wq = THAW_WQ_RETRY_AFTER;
      after = (uint64_t)retry_after * 1000;
      if (after > r->o.backoff_max_ms)
        after = r->o.backoff_max_ms;
    } else {
      wq = THAW_WQ_RETRY;
    }
    if (!quiet)
      thaw_warn("cachedimage create failed; will retry", "image", key,
                "result", result, "error", why);
  }
  if (e != NULL && wq == THAW_WQ_SUCCESS)
    mark_done(r, e);
  report(r, result, key); /* while key is still valid */
  thaw_workqueue_done(r->q, tok, wq, after); /* key is invalid from here */
}

static void release(thaw_recorder_t *r) {
  thaw_store_free(r->entries);
  free(r->field_manager);
  free(r);
}

static void on_created(const thaw_kube_result_t *res, void *data) {
  req_t *req = data;
  thaw_recorder_t *r = req->r;
  thaw_workqueue_token_t *tok = req->tok;
  free(req);
  r->inflight--;
  if (r->closing || res->err == THAW_ECANCELED) {
    /* going away: the entry no longer matters */
    entry_t *e = thaw_store_get(r->entries, thaw_workqueue_token_key(tok), NULL);
    if (e != NULL)
      drop_entry(r, e);
    thaw_workqueue_done(r->q, tok, THAW_WQ_SUCCESS, 0);
    if (r->closing && r->inflight == 0)
      release(r);
    return;
  }
  /* a 2xx whose body is not JSON still created the object */
  int err = (res->http_status >= 200 && res->http_status < 300) ? 0 : res->err;
  finish(r, tok, err, res->message, res->retry_after);
}

static void process(thaw_workqueue_t *q, const char *key,
                    thaw_workqueue_token_t *tok, void *data) {
  (void)q;
  thaw_recorder_t *r = data;
  entry_t *e = thaw_store_get(r->entries, key, NULL);
  if (e == NULL || e->state != PENDING || e->known || known(r, key)) {
    /* someone else created it meanwhile: nothing to do, nothing to report */
    if (e != NULL && e->state == PENDING)
      drop_entry(r, e);
    thaw_workqueue_done(r->q, tok, THAW_WQ_SUCCESS, 0);
    return;
  }
  char name[THAW_CACHEDIMAGE_NAME_MAX + 1];
  int rc = thaw_cachedimage_name(key, name, sizeof(name));
  if (rc != 0) {
    finish(r, tok, THAW_EINVAL, "no object name for this reference", 0);
    return;
  }
  cJSON *obj = make_object(name, key);
  req_t *req = malloc(sizeof(*req));
  rc = THAW_ENOMEM;
  if (obj != NULL && req != NULL) {
    *req = (req_t){r, tok};
    thaw_kube_opts_t o = {.field_manager = r->o.field_manager};
    rc = thaw_kube_create(r->kube, &thaw_kube_cachedimages, &o, obj,
                          on_created, req);
  }
  cJSON_Delete(obj);
  if (rc != 0) {
    free(req);
    finish(r, tok, rc, "request not started", 0); /* retried */
    return;
  }
  r->inflight++;
}

/* --- public ------------------------------------------------------------- */

int thaw_recorder_new(uv_loop_t *loop, thaw_kube_t *kube,
                      thaw_recorder_exists_cb exists, void *exists_data,
                      thaw_recorder_t **out) {
  return thaw_recorder_new_opts(loop, kube, exists, exists_data, NULL, out);
}

int thaw_recorder_new_opts(uv_loop_t *loop, thaw_kube_t *kube,
                           thaw_recorder_exists_cb exists, void *exists_data,
                           const thaw_recorder_opts_t *opts,
                           thaw_recorder_t **out) {
  *out = NULL;
  thaw_recorder_t *r = calloc(1, sizeof(*r));
  if (r == NULL)
    return THAW_ENOMEM;
  r->loop = loop;
  r->kube = kube;
  r->exists = exists;
  r->exists_data = exists_data;
  if (opts != NULL)
    r->o = *opts;
  thaw_recorder_opts_t *ro = &r->o;
  if (ro->concurrency == 0)
    ro->concurrency = CONCURRENCY;
  if (ro->backoff_base_ms == 0)
    ro->backoff_base_ms = BACKOFF_BASE_MS;
  if (ro->backoff_max_ms == 0)
    ro->backoff_max_ms = BACKOFF_MAX_MS;
  if (ro->qps == 0)
    ro->qps = QPS;
  if (ro->burst == 0)
    ro->burst = BURST;
  if (ro->max_attempts == 0)
    ro->max_attempts = MAX_ATTEMPTS;
  if (ro->max_attempts > UINT8_MAX)
    ro->max_attempts = UINT8_MAX; /* entry_t.attempts */
  if (ro->max_pending == 0)
    ro->max_pending = MAX_PENDING;
  if (ro->recent_ms == 0)
    ro->recent_ms = RECENT_MS;
  r->field_manager = strdup(ro->field_manager != NULL ? ro->field_manager
                                                       : FIELD_MANAGER);
  ro->field_manager = r->field_manager;
  r->entries = thaw_store_new(entry_free, NULL);
  thaw_workqueue_opts_t o = {.concurrency = ro->concurrency,
                             .backoff_base_ms = ro->backoff_base_ms,
                             .backoff_max_ms = ro->backoff_max_ms,
                             .qps = ro->qps,
                             .burst = ro->burst};
  if (r->field_manager == NULL || r->entries == NULL ||
      thaw_workqueue_new(&r->q, loop, &o, process, r) != 0) {
    thaw_store_free(r->entries);
    free(r->field_manager);
    free(r);
    return THAW_ENOMEM;
  }
  *out = r;
  return 0;
}

void thaw_recorder_set_observer(thaw_recorder_t *r, thaw_recorder_result_cb cb,
                                void *data) {
  r->cb = cb;
  r->cb_data = data;
}

static void dropped(thaw_recorder_t *r, const char *ref, uint64_t now) {
  r->drops_unlogged++;
  if (r->drop_logged_at == 0 || now - r->drop_logged_at >= DROP_LOG_MS) {
    char n[24];
    snprintf(n, sizeof(n), "%llu", (unsigned long long)r->drops_unlogged);
    thaw_warn("record queue full; cachedimage not recorded", "image", ref,
              "result", "dropped", "error", "queue full", "dropped", n);
    r->drop_logged_at = now ? now : 1;
    r->drops_unlogged = 0;
  }
  report(r, "dropped", ref);
}

void thaw_recorder_record(thaw_recorder_t *r, const char *normalized) {
  if (r == NULL || r->closing || normalized == NULL || *normalized == '\0')
    return;
  if (known(r, normalized))
    return;
  uint64_t now = uv_now(r->loop);
  sweep(r, now);
  entry_t *e = thaw_store_get(r->entries, normalized, NULL);
  if (e != NULL)
    return; /* queued, in flight, or done within RECENT_MS */
  size_t len = strlen(normalized);
  if (len > THAW_WORKQUEUE_KEY_MAX) {
    thaw_warn("cachedimage not recorded", "image", "(too long)", "result",
              "failed", "error", "reference too long");
    report(r, "failed", normalized);
    return;
  }
  if (r->pending >= r->o.max_pending) {
    dropped(r, normalized, now);
    return;
  }
  e = calloc(1, sizeof(*e) + len + 1);
  if (e == NULL) {
    dropped(r, normalized, now);
    return;
  }
  memcpy(e->key, normalized, len + 1);
  e->state = PENDING;
  if (thaw_store_put(r->entries, e->key, 0, e, NULL) < 0) {
    free(e);
    dropped(r, normalized, now);
    return;
  }
  r->pending++;
  if (thaw_workqueue_add(r->q, e->key) != 0) {
    drop_entry(r, e);
    dropped(r, normalized, now);
  }
}

void thaw_recorder_forget(thaw_recorder_t *r, const char *normalized) {
  if (r == NULL || r->closing || normalized == NULL)
    return;
  entry_t *e = thaw_store_get(r->entries, normalized, NULL);
  if (e == NULL)
    return;
  if (e->state == DONE)
    drop_entry(r, e);
  else
    e->known = 1; /* the worker skips it; an in-flight create just ends */
}

void thaw_recorder_index_observer(const char *normalized, void *recorder) {
  thaw_recorder_forget(recorder, normalized);
}

size_t thaw_recorder_pending(const thaw_recorder_t *r) { return r->pending; }

void thaw_recorder_free(thaw_recorder_t *r) {
  if (r == NULL || r->closing)
    return;
  r->closing = 1;
  thaw_workqueue_free(r->q); /* in-flight tokens are done() in on_created */
  if (r->inflight == 0)
    release(r);
}
