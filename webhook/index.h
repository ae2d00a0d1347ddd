/* index.h - the webhook's in-memory view of CachedImages and Namespaces.
 *
 * Two informers (thaw.dev/v1alpha1 cachedimages, v1 namespaces) feed two
 * hash tables: normalised spec.image -> state (counts by phase), and
 * namespace -> flags. The
 * lookups answer thaw_admit_env_t's callbacks in O(1) from memory, with no
 * network I/O: the admission path never waits on the API server. Everything
 * runs on the loop's thread. */
#ifndef THAW_WEBHOOK_INDEX_H
#define THAW_WEBHOOK_INDEX_H

#include <stddef.h>
#include <uv.h>

#include "admit.h"
#include "kube.h"

typedef struct thaw_index thaw_index_t;

/* Called when a CachedImage for `normalized` enters the index (any phase);
 * the recorder uses it to forget what it no longer needs to create. */
typedef void (*thaw_index_image_cb)(const char *normalized, void *data);

/* Creates an index on `kube` (which must outlive it). Returns 0 or
 * THAW_ENOMEM. It does nothing until started. */
int thaw_index_new(uv_loop_t *loop, thaw_kube_t *kube, thaw_index_t **out);
void thaw_index_set_observer(thaw_index_t *ix, thaw_index_image_cb cb,
                             void *data);
/* Starts both informers. Returns 0 or THAW_EINVAL when already started. */
int thaw_index_start(thaw_index_t *ix);
/* 1 once both informers have synced (the webhook's /readyz). */
int thaw_index_synced(const thaw_index_t *ix);
/* 1 while an informer's list or watch is refused (403): the index may be
 * stale, so the webhook is not ready. */
int thaw_index_denied(const thaw_index_t *ix);

/* The admit callbacks; `ix` is the thaw_index_t *. A spec.image that is not
 * normalised is normalised when indexed; an unparsable one is left out.
 * image_state: a CachedImage counts as Ready only with a valid
 * status.digest ("sha256:<64 hex>"); for the READY answers the digest of the
 * last delivered Ready object is written into `digest`
 * (THAW_ADMIT_DIGEST_SIZE bytes; NULL: not wanted), else "". */
int thaw_index_namespace_flags(const char *ns, void *ix);
enum thaw_image_state thaw_index_image_state(const char *normalized,
                                             char *digest, void *ix);

/* 1 when a CachedImage of `normalized` is Pending, Warming or has no phase
 * (a warm is to come: cold wait may gate on it); the admit env's
 * image_pending. */
int thaw_index_image_pending(const char *normalized, void *ix);

/* Number of CachedImages indexed. */
size_t thaw_index_images(const thaw_index_t *ix);

/* Stops the informers; memory goes once their requests have called back
 * (run the loop). Free it before its thaw_kube_t. NULL does nothing. */
void thaw_index_free(thaw_index_t *ix);

#endif
