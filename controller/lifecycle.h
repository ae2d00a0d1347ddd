/* lifecycle.h - expiry and eviction of CachedImages (docs/design.md,
 * "Expiry and eviction"), on the leader, once a second:
 *
 *   Ready/Failed, unused for expireAfter, not retain  -> Expiring (Unused)
 *   Ready, cache over --max-cache-bytes, LRU, unused  -> Expiring (Evicted)
 *   Expiring, used again (a pod, a pre-warm template) -> Ready (Pending when
 *                                                        nothing was cached)
 *   Expiring, expiresAt passed, unused                -> its manifests that no
 *       other object holds are deleted from the cache, then the object
 *
 * Every step is a write with the object's resourceVersion as precondition,
 * decided from the informers' state and the use counts (use.h), so a
 * restart or a new leader continues from status: expiresAt is never reset
 * and the grace is never skipped. An object with a reconcile job in flight
 * is left alone until it ends. */
#ifndef THAW_LIFECYCLE_H
#define THAW_LIFECYCLE_H

#include <uv.h>

#include "config.h"
#include "events.h"
#include "inventory.h"
#include "kube.h"
#include "metrics.h"
#include "reconcile.h"
#include "use.h"

typedef struct thaw_lifecycle thaw_lifecycle_t;

typedef struct {
  const thaw_config_t *cfg;
  thaw_kube_t *kube;
  thaw_reconciler_t *rec;
  thaw_use_t *use;
  thaw_inventory_t *inv;
  /* 1 while garbage collection runs (gc.h): nothing is deleted then.
   * May be NULL. */
  int (*gc_running)(void *data);
  void *gc_data;
  thaw_events_t *events;
  /* registers thaw_expired_total{reason} and thaw_cache_max_bytes */
  thaw_metrics_t *metrics;
  uint64_t tick_ms;        /* 0 = 1 s */
} thaw_lifecycle_opts_t;

int thaw_lifecycle_new(uv_loop_t *loop, const thaw_lifecycle_opts_t *o,
                       thaw_lifecycle_t **out);
void thaw_lifecycle_set_active(thaw_lifecycle_t *l, int leading);
/* 1 when a warm may start now: the cache is below --max-cache-bytes (or
 * unbounded). Else msg gets why (for status.message). */
int thaw_lifecycle_has_room(const thaw_lifecycle_t *l, char *msg, size_t cap);
/* The inventory's question (inventory.h): may manifests of cache
 * repository `repo` be deleted now? Not while garbage collection runs, a
 * job works on an object of that repository, or an object of it is not
 * settled (Pending or Warming: a warm may be about to push). */
int thaw_lifecycle_may_delete(const thaw_lifecycle_t *l, const char *repo);
/* 1 while the object's manifests are being deleted: it is no longer
 * an owner of its content (inventory changes for it are ignored). */
int thaw_lifecycle_releasing(const thaw_lifecycle_t *l, const char *name);
void thaw_lifecycle_free(thaw_lifecycle_t *l);

#endif
