/* reconcile.c - the CachedImage informer, the work queue and leadership
 * (reconcile.h); one processing of one object is in job.c. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "log.h"
#include "reconcile_internal.h"

/* --- informer handlers ------------------------------------------------ */

static void enqueue(thaw_reconciler_t *r, const char *key) {
  if (r->q && thaw_workqueue_add(r->q, key) != 0)
    thaw_warn("cannot queue", "name", key);
}

static void notify(thaw_reconciler_t *r, const char *key, const void *rec) {
  if (r->hooks.changed)
    r->hooks.changed(key, rec, r->hooks.data);
}

static void on_add(const char *key, const void *rec, void *data) {
  notify(data, key, rec);
  enqueue(data, key);
}

/* Our own status writes come back here too: only a new spec, a reset, or a
 * phase someone else set needs a look now; timers cover the rest. */
static void on_update(const char *key, const void *old_rec,
                      const void *new_rec, void *data) {
  const thaw_cirec_t *a = old_rec, *b = new_rec;
  thaw_reconciler_t *r = data;
  void *unused;
  notify(r, key, b);
  if (thaw_cirec_spec_changed(a, b)) /* e.g. pull secrets fixed: try now */
    thaw_store_remove(r->not_before, key, &unused, NULL);
  if (thaw_cirec_spec_changed(a, b) || b->phase == THAW_CI_NONE ||
      b->phase == THAW_CI_PENDING || a->phase != b->phase)
    enqueue(data, key);
}

static void on_delete(const char *key, const void *rec, void *data) {
  (void)rec;
  thaw_reconciler_t *r = data;
  void *old;
  notify(r, key, NULL);
  thaw_store_remove(r->written, key, &old, NULL);
  thaw_store_remove(r->not_before, key, &old, NULL);
  for (job_t *j = r->jobs, *next; j; j = next) {
    next = j->next;
    if (strcmp(j->name, key) == 0 && !j->canceled) {
      thaw_info("deleted while warming: warm canceled", "name", key);
      thaw_job_cancel(j);
    }
  }
}

/* --- the queue -------------------------------------------------------- */

static void process(thaw_workqueue_t *q, const char *key,
                    thaw_workqueue_token_t *tok, void *data) {
  thaw_reconciler_t *r = data;
  uint64_t rv, written = 0;
  const thaw_cirec_t *c = thaw_informer_get(r->inf, key, &rv);
  if (c == NULL) {
    thaw_workqueue_done(q, tok, THAW_WQ_SUCCESS, 0);
    return;
  }
  thaw_store_get(r->written, key, &written);
  if (written > rv) {
    /* Our last write is not in the store yet: its event re-queues. */
    thaw_workqueue_done(q, tok, THAW_WQ_SUCCESS, 0);
    return;
  }
  job_t *j = thaw_job_new(r, q, tok, key, c);
  if (j == NULL) {
    thaw_workqueue_done(q, tok, THAW_WQ_RETRY, 0);
    return;
  }
  thaw_job_run(j);
}

void thaw_reconciler_set_active(thaw_reconciler_t *r, thaw_warmer_t *warmer) {
  int active = warmer != NULL;
  if (active && r->q == NULL) {
    r->warmer = warmer;
    thaw_workqueue_opts_t wo = {.concurrency = r->cfg->concurrency,
                                .backoff_base_ms = r->o.backoff_base_ms,
                                .backoff_max_ms = r->o.backoff_max_ms,
                                .qps = -1};
    if (thaw_workqueue_new(&r->q, r->loop, &wo, process, r) != 0) {
      thaw_error("cannot make the work queue (out of memory)");
      return;
    }
    const thaw_store_t *s = thaw_informer_store(r->inf);
    size_t pos = 0;
    const char *key;
    while (thaw_store_next(s, &pos, &key, NULL, NULL))
      enqueue(r, key);
    thaw_info("reconciling", "objects", NULL);
  } else if (!active && r->q != NULL) {
    thaw_workqueue_t *q = r->q;
    r->q = NULL;
    thaw_workqueue_shutdown(q, NULL);
    for (job_t *j = r->jobs, *next; j; j = next) {
      next = j->next;
      thaw_job_cancel(j);
    }
    thaw_workqueue_free(q); /* in-flight tokens may still be done() */
    r->warmer = NULL;
  }
}

/* --- metrics ---------------------------------------------------------- */

static void collect(thaw_metrics_t *m, void *data) {
  (void)m;
  thaw_reconciler_t *r = data;
  double counts[THAW_CI_PHASES] = {0}, size = 0;
  const thaw_store_t *s = thaw_informer_store(r->inf);
  size_t pos = 0;
  void *rec;
  while (thaw_store_next(s, &pos, NULL, NULL, &rec)) {
    const thaw_cirec_t *c = rec;
    counts[c->phase == THAW_CI_NONE ? THAW_CI_PENDING : c->phase]++;
    if (c->phase == THAW_CI_READY)
      size += (double)c->size_bytes;
  }
  for (int p = THAW_CI_PENDING; p < THAW_CI_PHASES; p++) {
    const char *v[] = {thaw_ci_phase_name(p)};
    thaw_metric_set(r->m_phase, v, counts[p]);
  }
  int64_t unique = r->hooks.cache_bytes ? r->hooks.cache_bytes(r->hooks.data)
                                        : -1;
  thaw_metric_set(r->m_size, NULL, unique >= 0 ? (double)unique : size);
}

static const double warm_buckets[] = {0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30,
                                      60, 120, 300, 600, 1800};

static int register_metrics(thaw_reconciler_t *r, thaw_metrics_t *m) {
  static const char *const phase[] = {"phase"}, *const result[] = {"result"},
                           *const source[] = {"source"};
  r->m_phase = thaw_metrics_gauge(m, "thaw_cachedimages",
                                  "CachedImages by phase.", 1, phase);
  r->m_size = thaw_metrics_gauge(m, "thaw_cache_size_bytes",
                                 "Unique bytes of the cached images (blobs "
                                 "and manifests shared by several counted "
                                 "once).", 0, NULL);
  r->m_total = thaw_metrics_counter(m, "thaw_warm_total",
                                    "Warms by result (success, failure).", 1,
                                    result);
  r->m_duration = thaw_metrics_histogram(
      m, "thaw_warm_duration_seconds", "Time of one warm, start to end.", 0,
      NULL, warm_buckets, sizeof warm_buckets / sizeof warm_buckets[0]);
  r->m_bytes = thaw_metrics_counter(
      m, "thaw_warm_bytes_total",
      "Blob bytes of warms by source (upstream, mounted, present).", 1,
      source);
  if (!r->m_phase || !r->m_size || !r->m_total || !r->m_duration ||
      !r->m_bytes)
    return THAW_ENOMEM;
  /* Every series exists from the start, so rate() and alerts see zeros. */
  const char *ok[] = {"success"}, *bad[] = {"failure"};
  thaw_metric_add(r->m_total, ok, 0);
  thaw_metric_add(r->m_total, bad, 0);
  const char *srcs[] = {"upstream", "mounted", "present"};
  for (int i = 0; i < 3; i++)
    thaw_metric_add(r->m_bytes, &srcs[i], 0);
  return thaw_metrics_on_collect(m, collect, r);
}

/* --- life cycle ------------------------------------------------------- */

int thaw_reconciler_new(uv_loop_t *loop, const thaw_reconciler_opts_t *o,
                        thaw_reconciler_t **out) {
  *out = NULL;
  if (o == NULL || o->cfg == NULL || o->kube == NULL)
    return THAW_EINVAL;
  thaw_reconciler_t *r = calloc(1, sizeof *r);
  if (r == NULL)
    return THAW_ENOMEM;
  r->loop = loop;
  uv_timer_init(loop, &r->drain_timer);
  r->drain_timer.data = r;
  r->o = *o;
  r->cfg = o->cfg;
  if (r->o.backoff_base_ms == 0)
    r->o.backoff_base_ms = 2000;
  if (r->o.backoff_max_ms == 0)
    r->o.backoff_max_ms = 300000;
  r->written = thaw_store_new(NULL, NULL);
  r->not_before = thaw_store_new(NULL, NULL);
  r->events = thaw_events_new(o->kube);
  thaw_informer_config_t ic = {
      .resource = &thaw_kube_cachedimages,
      .name = "cachedimages",
      .project = thaw_cirec_project,
      .free_rec = thaw_cirec_free,
      .equal = thaw_cirec_equal,
      .handlers = {.on_add = on_add, .on_update = on_update,
                   .on_delete = on_delete, .data = r},
  };
  int rc = r->written && r->not_before && r->events
               ? thaw_informer_new(loop, o->kube, &ic, &r->inf)
               : THAW_ENOMEM;
  if (rc == 0 && o->metrics)
    rc = register_metrics(r, o->metrics);
  if (rc != 0) {
    thaw_reconciler_free(r);
    return rc;
  }
  *out = r;
  return 0;
}

int thaw_reconciler_start(thaw_reconciler_t *r) {
  return thaw_informer_start(r->inf);
}

int thaw_reconciler_synced(const thaw_reconciler_t *r) {
  return thaw_informer_has_synced(r->inf);
}

int thaw_reconciler_denied(const thaw_reconciler_t *r) {
  return thaw_informer_denied(r->inf);
}

int thaw_reconciler_exists(const thaw_reconciler_t *r, const char *normalized) {
  char name[THAW_CACHEDIMAGE_NAME_MAX + 1];
  if (thaw_cachedimage_name(normalized, name, sizeof name) != 0)
    return 0;
  return thaw_informer_get(r->inf, name, NULL) != NULL;
}

const thaw_store_t *thaw_reconciler_store(const thaw_reconciler_t *r) {
  return thaw_informer_store(r->inf);
}

int thaw_reconciler_job_running(const thaw_reconciler_t *r, const char *name) {
  for (const job_t *j = r->jobs; j; j = j->next)
    if (strcmp(j->name, name) == 0)
      return 1;
  return 0;
}

thaw_events_t *thaw_reconciler_events(thaw_reconciler_t *r) {
  return r->events;
}

void thaw_reconciler_set_hooks(thaw_reconciler_t *r,
                               const thaw_reconciler_hooks_t *h) {
  r->hooks = *h;
}

unsigned thaw_reconciler_warming(const thaw_reconciler_t *r) {
  return r->warming;
}

/* --- pause for garbage collection -------------------------------------- */

static void on_drain_tick(uv_timer_t *t) {
  thaw_reconciler_t *r = t->data;
  if (!r->paused || r->warming > 0 || r->drained == NULL)
    return;
  void (*cb)(void *) = r->drained;
  r->drained = NULL;
  cb(r->drained_ctx);
}

void thaw_reconciler_warm_ended(thaw_reconciler_t *r) {
  if (r->paused && r->warming == 0 && r->drained && !r->closing)
    uv_timer_start(&r->drain_timer, on_drain_tick, 0, 0);
}

void thaw_reconciler_pause(thaw_reconciler_t *r, int paused,
                           void (*drained)(void *ctx), void *ctx) {
  r->paused = paused != 0;
  r->drained = r->paused ? drained : NULL;
  r->drained_ctx = ctx;
  if (!r->paused)
    uv_timer_stop(&r->drain_timer);
  thaw_reconciler_warm_ended(r);
}

/* A job may push under the public or the private/ path of its image. */
static int in_repo(const char *image, const char *repo) {
  char mine[THAW_IMGREF_STR_MAX + 1];
  for (int priv = 0; priv < 2; priv++)
    if (thaw_warm_cache_repo_of(image, priv, mine, sizeof mine) != 0 ||
        strcmp(mine, repo) == 0)
      return 1; /* cannot tell: say yes */
  return 0;
}

int thaw_reconciler_busy(const thaw_reconciler_t *r, const char *repo) {
  for (const job_t *j = r->jobs; j; j = j->next)
    if (j->ref.len > 0 && in_repo(j->ref.str, repo))
      return 1;
  /* A job's last write not yet seen by the informer: what it pushed is
   * not in the store yet. */
  size_t pos = 0;
  const char *name;
  uint64_t written, rv;
  while (thaw_store_next(r->written, &pos, &name, &written, NULL)) {
    const thaw_cirec_t *c = thaw_informer_get(r->inf, name, &rv);
    if (c != NULL && written > rv && in_repo(c->norm, repo))
      return 1;
  }
  return 0;
}

static void on_drain_closed(uv_handle_t *h) { free(h->data); }

void thaw_reconciler_release(thaw_reconciler_t *r) {
  thaw_store_free(r->written);
  thaw_store_free(r->not_before);
  thaw_events_free(r->events);
  uv_timer_stop(&r->drain_timer);
  uv_close((uv_handle_t *)&r->drain_timer, on_drain_closed); /* frees r */
}

void thaw_reconciler_free(thaw_reconciler_t *r) {
  if (r == NULL)
    return;
  thaw_reconciler_set_active(r, NULL);
  thaw_informer_free(r->inf);
  r->inf = NULL;
  /* Jobs still waiting on a kube callback hold r; the last one to end
   * releases it (they all end once the kube client is freed). */
  r->closing = 1;
  if (r->jobs == NULL)
    thaw_reconciler_release(r);
}
