/* repair.h - gives a pod stuck pulling an image thaw rewrote its original
 * image back (docs/design.md "Repair of stuck pods").
 *
 * The webhook's health gate protects admission, but a node whose node-local
 * endpoint is down, or a cache that lost an image after admission, leaves a
 * pod in ErrImagePull/ImagePullBackOff on `<cache-host>/...`. Container and
 * init container images are the mutable part of a pod, so the leader puts
 * the original back once a pull has been failing for `after_ms`.
 *
 * Only images thaw rewrote are touched: the pod must carry the webhook's
 * annotation thaw.dev/original-images, and each container repaired must be
 * waiting in ErrImagePull or ImagePullBackOff on an image under the cache
 * host. A pod without the annotation (a cache path named by hand, admitted
 * while the webhook was down) gets back only the originals of private
 * images' cache paths -- every path under the private host, and a cache-host
 * path whose CachedImage is private -- which the cache refuses to anyone
 * without the namespace's credentials, so that the pod pulls from upstream
 * with its own secrets, as without thaw. The original is the annotation's value for that container when it
 * names the same image (normalised) as the rewritten one, else the exact
 * inverse of the rewrite (thaw_imgref_unrewrite), so a stale annotation
 * never brings back an older image. One JSON Patch per pod: a `test` of the
 * uid and of every image read, then the `replace`s, so a pod that changed
 * in between is refused by the API server (422) and read again, never
 * clobbered.
 *
 * Every replica observes pods (thaw_sources_observe) and remembers, in
 * memory, since when each candidate has been failing (at most
 * THAW_REPAIR_MAX_PODS; pods beyond are picked up from the pod informer
 * once there is room); only the active one (the leader) reads and patches.
 * A pod that recovers or goes away is forgotten; a restart starts the clock
 * again. A repair counts in thaw_pods_repaired_total and leaves one Warning
 * Event, reason ImageRepaired, on the pod. */
#ifndef THAW_REPAIR_H
#define THAW_REPAIR_H

#include <cjson/cJSON.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "kube.h"
#include "metrics.h"
#include "sources.h"

#define THAW_REPAIR_MAX_PODS 10000   /* candidates remembered */
#define THAW_REPAIR_MESSAGE_MAX 1024 /* Event message */

typedef struct thaw_repair thaw_repair_t;

/* 1 when a CachedImage of the normalised image `norm` has status.private. */
typedef int (*thaw_repair_private_cb)(const char *norm, void *data);

typedef struct {
  const char *cache_host;  /* required: "localhost:7439" */
  const char *private_host; /* "localhost:7440/private"; NULL: that */
  thaw_repair_private_cb is_private; /* optional: no cache-host path of an
                                        unannotated pod is private */
  void *data;
  uint64_t after_ms;       /* failing this long before a repair; > 0 */
  thaw_metrics_t *metrics; /* optional: thaw_pods_repaired_total, at 0
                              from the start */
} thaw_repair_opts_t;

/* Creates the repairer and adds its observer to `sources` (which must
 * outlive it, as must `kube`). It starts inactive. Returns 0 and sets *out,
 * or THAW_EINVAL, THAW_ENOMEM, THAW_E2BIG (no observer slot left). */
int thaw_repair_new(uv_loop_t *loop, thaw_kube_t *kube,
                    thaw_sources_t *sources, const thaw_repair_opts_t *o,
                    thaw_repair_t **out);

/* Leading: reads and patches pods that are due (checked every second).
 * Not leading: only remembers; a read in flight patches nothing. */
void thaw_repair_set_active(thaw_repair_t *r, int active);

/* Stops and frees; requests in flight end when the kube client is freed, so
 * run the loop afterwards. NULL does nothing. The observer stays registered
 * in `sources`: free the repairer after the sources (or never notify). */
void thaw_repair_free(thaw_repair_t *r);

/* The decision, pure but for o->is_private: what to do with `pod` as read
 * from the API server (o->cache_host and o->is_private are used).
 * Returns how many containers get their original back (0: leave the pod
 * alone); then *ops is the JSON Patch (an array; the caller frees it) and
 * msg the Event message (cut to msglen - 1). THAW_ENOMEM when out of
 * memory. */
int thaw_repair_plan(const cJSON *pod, const thaw_repair_opts_t *o,
                     cJSON **ops, char *msg, size_t msglen);

#endif
