/* release.h - releases the pods that the webhook's cold wait holds at the
 * scheduling gate thaw.dev/warming (docs/design.md "Release of gated pods").
 *
 * Every replica tracks the gated pods from the pod informer (podinfo.h
 * keeps a gated pod's uid, creationTimestamp, cold wait and which images it
 * may wait for) and what the CachedImages say about each normalised image,
 * so a new leader releases what the old one held. Only the active replica
 * (the leader) reads and patches, through a work queue of pod keys: at most
 * THAW_RELEASE_MAX_INFLIGHT at once, failures retried after 1 s doubling
 * to 30 s. A pod is looked at when it appears or changes, when a
 * CachedImage of one of its images changes what it says, at its deadline,
 * and, all at once, when this replica starts leading.
 *
 * A pod is due once each image it waits for (containers and init
 * containers, pull policy not Never, normalised) is done
 * (thaw_release_image_done), or at its deadline: creationTimestamp +
 * thaw.dev/cold-wait-seconds. Then it is read, and thaw_release_plan()
 * decides again on what was read: one JSON Patch that tests the uid,
 * rewrites the images that are Ready and may be served to the pod (as the
 * webhook's row 10 would, pinned to the Ready object's status.digest; a
 * Ready object without a valid one does not count as Ready), the originals
 * into thaw.dev/original-images as
 * the webhook writes them), and tests and removes the gate. 409/422: read
 * again; 404: forgotten. A release counts in
 * thaw_pods_released_total{result} (rewritten: at least one image now
 * names the cache; unchanged) and thaw_cold_wait_seconds (creation to
 * release), and logs one line. */
#ifndef THAW_RELEASE_H
#define THAW_RELEASE_H

#include <cjson/cJSON.h>
#include <time.h>
#include <uv.h>

#include "cirec.h"
#include "kube.h"
#include "metrics.h"
#include "sources.h"

/* The Secret a pod must name for private images (controller/nspull.h). */
#define THAW_RELEASE_PULL_SECRET "thaw-pull"

#define THAW_RELEASE_MAX_INFLIGHT 8
#define THAW_RELEASE_RETRY_MS 1000      /* first retry after a failure */
#define THAW_RELEASE_RETRY_MAX_MS 30000 /* cap of the doubling */

/* --- the decision (pure) ------------------------------------------------ */

/* What the CachedImages holding one normalised image say, any object. */
enum {
  THAW_RELEASE_CI_ANY = 1,     /* at least one exists */
  THAW_RELEASE_CI_ACTIVE = 2,  /* one is Pending, Warming or has no phase */
  THAW_RELEASE_CI_READY = 4,   /* one is Ready, with a valid status.digest */
  THAW_RELEASE_CI_FAILED = 8,  /* one is Failed */
  THAW_RELEASE_CI_PRIVATE = 16 /* one has status.private */
  /* served to a pod that names THAW_RELEASE_PULL_SECRET only, rewritten to
   * THAW_IMGREF_PRIVATE_HOST */
};

/* 1 when an image whose objects say `ci` is no longer waited for: one is
 * Ready or Failed, or some exist and none is Pending, Warming or without
 * phase (e.g. only Expiring). With none at all it is still waited for: the
 * webhook or the pod sweep records it, off the request path. */
int thaw_release_image_done(unsigned ci);

/* The THAW_RELEASE_CI_* of a normalised image. */
typedef unsigned (*thaw_release_lookup_cb)(const char *normalized,
                                           void *data);
/* The status.digest a rewrite of a Ready image pins (the last Ready
 * object's seen), or NULL: an image without one is left as submitted. */
typedef const char *(*thaw_release_digest_cb)(const char *normalized,
                                              void *data);

typedef struct {
  const char *cache_host; /* "localhost:7439" */
  const char *private_host; /* "localhost:7440/private"; NULL: that */
  /* thaw_sources_ns_serves() of the pod's namespace: NONE (or UNKNOWN)
   * rewrites nothing and waits for nothing, PUBLIC rewrites images that
   * are not private, PRIVATE rewrites private ones too. */
  int ns_serves;
  thaw_release_lookup_cb lookup;
  thaw_release_digest_cb digest;
  void *data;
  time_t now; /* wall clock, seconds */
} thaw_release_env_t;

typedef struct {
  int gate;         /* index of the gate in spec.schedulingGates; -1: the
                       pod is not gated (or is being deleted) */
  time_t created;   /* metadata.creationTimestamp (0 if absent) */
  time_t deadline;  /* created + the cold wait */
  int rewritten;    /* images the patch rewrites */
  cJSON *ops;       /* the patch when released; the caller frees it */
} thaw_release_plan_t;

/* Decides what to do with `pod` as read from the API server. Returns 1 and
 * fills out->ops when the pod is due (every image it waits for is done, or
 * env->now >= out->deadline); 0 when there is nothing to do now (out->gate
 * -1: not gated; else wait for a CachedImage or the deadline); THAW_ENOMEM.
 * A pod labelled thaw.dev/caching=disabled waits for nothing and is
 * released unchanged. */
int thaw_release_plan(const cJSON *pod, const thaw_release_env_t *env,
                      thaw_release_plan_t *out);

/* --- the releaser ------------------------------------------------------- */

typedef struct thaw_release thaw_release_t;

typedef struct {
  const char *cache_host;  /* required */
  const char *private_host; /* NULL: THAW_IMGREF_PRIVATE_HOST */
  thaw_metrics_t *metrics; /* optional: thaw_pods_released_total (both
                              results at 0) and thaw_cold_wait_seconds */
  /* 1 once the CachedImage informer has synced (required). */
  int (*synced)(void *data);
  void *data;
} thaw_release_opts_t;

/* Creates the releaser and adds its observer to `sources` (which must
 * outlive it, as must `kube`). It starts inactive. Returns 0 and sets *out,
 * or THAW_EINVAL, THAW_ENOMEM, THAW_E2BIG (no observer slot left). */
int thaw_release_new(uv_loop_t *loop, thaw_kube_t *kube,
                     thaw_sources_t *sources, const thaw_release_opts_t *o,
                     thaw_release_t **out);

/* Every add, update and delete (rec NULL) of the CachedImage informer. */
void thaw_release_cachedimage(thaw_release_t *r, const char *name,
                              const thaw_cirec_t *rec);

/* Leading: looks at every tracked pod at once, then as things change.
 * Not leading: only tracks; a read in flight patches nothing. */
void thaw_release_set_active(thaw_release_t *r, int active);

/* 1 when a CachedImage of the normalised image `norm` has status.private,
 * as far as thaw_release_cachedimage() was told (the repair asks). */
int thaw_release_is_private(thaw_release_t *r, const char *norm);

/* Stops and frees; requests in flight end when the kube client is freed,
 * so run the loop afterwards. NULL does nothing. Free it after `sources`,
 * whose observer it stays. */
void thaw_release_free(thaw_release_t *r);

#endif
