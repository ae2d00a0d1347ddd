/* events.h - Kubernetes Events about CachedImages and pods (core/v1 Event).
 *
 * A CachedImage is cluster-scoped, so its Events go in namespace "default",
 * as the API server expects for cluster-scoped objects; an Event about a
 * namespaced object (a repaired Pod) goes in that object's namespace.
 * Repeats are aggregated as client-go's EventCorrelator does: the same
 * object, reason and message within 10 minutes PATCH the existing Event's
 * count and lastTimestamp instead of creating another, so an image that
 * fails for hours leaves one Event, not hundreds. Fire and forget: a failed
 * write is logged, never retried. Messages come from thaw_registry results
 * and image references, which hold no credentials. */
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

/* The object an Event is about (its involvedObject). */
typedef struct {
  const char *api_version; /* "v1" */
  const char *kind;        /* "Pod" */
  const char *namespace;   /* NULL: cluster-scoped, the Event goes in
                              THAW_EVENTS_NAMESPACE */
  const char *name;
  const char *uid;         /* NULL or "" when unknown */
} thaw_events_object_t;

/* As thaw_events_emit, about any object; aggregated the same way (the
 * series is namespace, name, reason and message). Reasons: ImageRepaired
 * on Pods. */
void thaw_events_emit_object(thaw_events_t *ev,
                             const thaw_events_object_t *obj,
                             const char *type, const char *reason,
                             const char *message);

#endif
