/* events.c - Events about CachedImages (events.h). */
#include "events.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

#include "cirec.h"
#include "error.h"
#include "log.h"

#define MESSAGE_MAX 1024 /* the API accepts more; keep events readable */

static void on_created(const thaw_kube_result_t *res, void *data) {
  (void)data; /* NULL: nothing here may outlive the reconciler */
  if (res->err != 0 && res->err != THAW_ECANCELED)
    thaw_warn("event not recorded", "error", thaw_err_name(res->err),
              "message", res->message);
}

void thaw_event_emit(thaw_kube_t *kube, const char *name, const char *uid,
                     const char *type, const char *reason,
                     const char *message) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  char now[32], ev_name[128];
  thaw_rfc3339(ts.tv_sec, now, sizeof now);
  /* A legacy core/v1 Event (no eventTime): the API server then checks only
   * that a cluster-scoped object's event is in "default".
   * client-go's naming: object name, a dot, the time in hex nanoseconds. */
  snprintf(ev_name, sizeof ev_name, "%.100s.%llx", name,
           (unsigned long long)ts.tv_sec * 1000000000ull +
               (unsigned long long)ts.tv_nsec);
  char msg[MESSAGE_MAX + 1];
  snprintf(msg, sizeof msg, "%s", message);

  cJSON *ev = cJSON_CreateObject();
  cJSON *meta = cJSON_AddObjectToObject(ev, "metadata");
  cJSON *obj = cJSON_AddObjectToObject(ev, "involvedObject");
  cJSON *src = cJSON_AddObjectToObject(ev, "source");
  if (meta == NULL || obj == NULL || src == NULL ||
      !cJSON_AddStringToObject(ev, "apiVersion", "v1") ||
      !cJSON_AddStringToObject(ev, "kind", "Event") ||
      !cJSON_AddStringToObject(meta, "name", ev_name) ||
      !cJSON_AddStringToObject(meta, "namespace", THAW_EVENTS_NAMESPACE) ||
      !cJSON_AddStringToObject(obj, "apiVersion", "thaw.dev/v1alpha1") ||
      !cJSON_AddStringToObject(obj, "kind", "CachedImage") ||
      !cJSON_AddStringToObject(obj, "name", name) ||
      (uid && *uid && !cJSON_AddStringToObject(obj, "uid", uid)) ||
      !cJSON_AddStringToObject(ev, "type", type) ||
      !cJSON_AddStringToObject(ev, "reason", reason) ||
      !cJSON_AddStringToObject(ev, "message", msg) ||
      !cJSON_AddStringToObject(src, "component", "thaw-controller") ||
      !cJSON_AddStringToObject(ev, "firstTimestamp", now) ||
      !cJSON_AddStringToObject(ev, "lastTimestamp", now) ||
      !cJSON_AddNumberToObject(ev, "count", 1)) {
    cJSON_Delete(ev);
    thaw_warn("event not recorded", "error", "out of memory");
    return;
  }
  thaw_kube_opts_t o = {.namespace = THAW_EVENTS_NAMESPACE};
  if (thaw_kube_create(kube, &thaw_kube_events, &o, ev, on_created, NULL) != 0)
    thaw_warn("event not recorded", "reason", reason);
  cJSON_Delete(ev);
}
