/* events.h - Kubernetes Events about CachedImages (core/v1 Event). A
 * CachedImage is cluster-scoped, so its Events go in namespace "default",
 * as the API server does for cluster-scoped objects' events. Fire and
 * forget: a failed create is logged, never retried; an event never holds
 * credentials (messages come from thaw_registry results, which hold none). */
#ifndef THAW_EVENTS_H
#define THAW_EVENTS_H

#include "kube.h"

#define THAW_EVENTS_NAMESPACE "default"

/* type: "Normal" or "Warning"; reason: Warming, Cached, WarmFailed,
 * Refreshed. `uid` may be "" when unknown. */
void thaw_event_emit(thaw_kube_t *kube, const char *name, const char *uid,
                     const char *type, const char *reason,
                     const char *message);

#endif
