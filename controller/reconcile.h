/* reconcile.h - the CachedImage reconciler: an informer on CachedImages, a
 * rate-limited work queue, and per object the state machine of DESIGN.md
 * ("Controller"):
 *
 *   Pending/Warming/(no status) -> warm -> Ready | Failed
 *   Failed  -> after the backoff of `attempts` since lastCheckedAt -> warm
 *   Ready   -> tag references: every refresh interval, HEAD upstream; a new
 *              digest is warmed (the phase stays Ready, the cache's tag moves
 *              at the last PUT) and swapped into status.
 *
 * Writes are merge patches on the status subresource, one at a time per
 * object, progress at most once a second. Only one warm per object runs at
 * once (the work queue never hands out a key twice), and only while active
 * (the leader). Everything needed to resume is in the object: a restart
 * warms Pending/Warming objects again and skips blobs already cached. */
#ifndef THAW_RECONCILE_H
#define THAW_RECONCILE_H

#include <uv.h>

#include "cirec.h"
#include "config.h"
#include "events.h"
#include "informer.h"
#include "kube.h"
#include "metrics.h"
#include "sources.h"
#include "store.h"
#include "warm.h"

typedef struct thaw_reconciler thaw_reconciler_t;

typedef struct {
  const thaw_config_t *cfg;
  thaw_kube_t *kube;
  thaw_sources_t *sources; /* namespace labels, pull secrets; may be NULL */
  thaw_metrics_t *metrics; /* may be NULL */
  /* Failed retries: base << attempts, capped; 0 = 2000 / 300000 ms. */
  uint64_t backoff_base_ms, backoff_max_ms;
} thaw_reconciler_opts_t;

int thaw_reconciler_new(uv_loop_t *loop, const thaw_reconciler_opts_t *o,
                        thaw_reconciler_t **out);
/* Starts the CachedImage informer. */
int thaw_reconciler_start(thaw_reconciler_t *r);
int thaw_reconciler_synced(const thaw_reconciler_t *r);
/* 1 while its informer's list or watch is refused (403). */
int thaw_reconciler_denied(const thaw_reconciler_t *r);
/* Leading (warmer not NULL; it must stay alive until the next call):
 * queue every object and warm with `warmer`. Not leading (NULL): cancel
 * every warm at once (a resumed warm skips what was copied) and drop the
 * queue; the caller then frees the warmer and its registry client, which
 * stops the transfers the warms had in flight. */
void thaw_reconciler_set_active(thaw_reconciler_t *r, thaw_warmer_t *warmer);
/* 1 when a CachedImage for this normalised reference is in the store. */
int thaw_reconciler_exists(const thaw_reconciler_t *r, const char *normalized);
/* Garbage collection (gc.h) must see no push: paused (1), no new warm
 * starts (a job about to push ends and is retried in a second) and
 * drained(ctx) runs once no warm is in flight (at once when none is; on
 * the loop either way). Resume with 0. */
void thaw_reconciler_pause(thaw_reconciler_t *r, int paused,
                           void (*drained)(void *ctx), void *ctx);
/* 1 while a job is processing an object whose cache repository is `repo`
 * (it may push there): manifests of `repo` must not be deleted now. */
int thaw_reconciler_busy(const thaw_reconciler_t *r, const char *repo);
/* The CachedImage informer's store (records thaw_cirec_t). */
const thaw_store_t *thaw_reconciler_store(const thaw_reconciler_t *r);
/* 1 while a job is processing object `name`. */
int thaw_reconciler_job_running(const thaw_reconciler_t *r, const char *name);
/* The Event recorder the reconciler uses (for CachedImage Events). */
thaw_events_t *thaw_reconciler_events(thaw_reconciler_t *r);
/* What the lifecycle (lifecycle.h) adds to reconciling. */
typedef struct {
  /* 1 when a warm may start; else 0 and msg says why: the object stays
   * Pending with that message and is tried again later. */
  int (*has_room)(char *msg, size_t cap, void *data);
  /* thaw_cache_size_bytes: unique bytes, or -1 when unknown (then the sum
   * of the Ready objects' sizeBytes is shown). */
  int64_t (*cache_bytes)(void *data);
  /* 0 while a push into cache repository `repo` must wait (a manifest
   * DELETE in flight there could land after the push). */
  int (*may_push)(const char *repo, void *data);
  /* 1 when the cache lacks the top manifest object `name` names (read as
   * 404): a refresh that finds the same digest upstream copies it again. */
  int (*absent)(const char *name, void *data);
  /* Every add (old NULL), update and delete (rec NULL) of the informer. */
  void (*changed)(const char *name, const thaw_cirec_t *rec, void *data);
  void *data;
} thaw_reconciler_hooks_t;
void thaw_reconciler_set_hooks(thaw_reconciler_t *r,
                               const thaw_reconciler_hooks_t *h);
/* Warms in flight. */
unsigned thaw_reconciler_warming(const thaw_reconciler_t *r);
void thaw_reconciler_free(thaw_reconciler_t *r);

#endif
