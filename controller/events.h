/* events.h - Kubernetes Events about CachedImages (core/v1 Event).
 *
 * A CachedImage is cluster-scoped, so its Events go in namespace "default",
 * as the API server expects for cluster-scoped objects. Repeats are
 * aggregated as client-go's EventCorrelator does: the same object, reason
 * and message within 10 minutes PATCH the existing Event's count and
 * lastTimestamp instead of creating another, so an image that fails for
 * hours leaves one Event, not hundreds. Fire and forget: a failed write is
 * logged, never retried. Messages come from thaw_registry results, which
 * hold no credentials. */
#ifndef THAW_EVENTS_H
#define THAW_EVENTS_H

#include <stdint.h>

#include "kube.h"

#define THAW_EVENTS_NAMESPACE "default"
#define THAW_EVENTS_WINDOW_MS (10 * 60 * 1000) /* aggregation window */
#define THAW_EVENTS_MAX 4096 /* remembered series, oldest dropped first */

typedef struct thaw_events thaw_events_t;

/* `kube` must outlive the recorder. Returns NULL when out of memory. */
thaw_events_t *thaw_events_new(thaw_kube_t *kube);
void thaw_events_free(thaw_events_t *ev);

/* type: "Normal" or "Warning"; reason: Warming, Cached, WarmFailed,
 * Refreshed. `uid` may be "" when unknown. */
void thaw_events_emit(thaw_events_t *ev, const char *name, const char *uid,
                      const char *type, const char *reason,
                      const char *message);

#endif
