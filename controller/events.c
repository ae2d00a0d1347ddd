/* events.c - Events about CachedImages and pods, aggregated (events.h). */
#include "events.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cirec.h"
#include "denied.h"
#include "error.h"
#include "log.h"
#include "store.h"

#define MESSAGE_MAX 1024 /* the API accepts more; keep events readable */

/* One series: the Event written for (object, reason, message). */
typedef struct {
  char ns[64]; /* the Event's namespace */
  char ev_name[128];
  char first[32]; /* firstTimestamp */
  unsigned count;
  uint64_t last_ms;
} series_t;

struct thaw_events {
  thaw_kube_t *kube;
  thaw_store_t *series; /* "ns\x1fname\x1freason\x1fmessage" -> series_t */
};

static uint64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void series_free(void *rec, void *data) {
  (void)data;
  free(rec);
}

thaw_events_t *thaw_events_new(thaw_kube_t *kube) {
  thaw_events_t *ev = calloc(1, sizeof *ev);
  if (ev == NULL)
    return NULL;
  ev->kube = kube;
  if ((ev->series = thaw_store_new(series_free, NULL)) == NULL) {
    free(ev);
    return NULL;
  }
  return ev;
}

void thaw_events_free(thaw_events_t *ev) {
  if (ev == NULL)
    return;
  thaw_store_free(ev->series);
  free(ev);
}

/* Events are best effort and never retried, but a missing grant would
 * log a line per event: the first 403 of each verb is logged, once (file
 * scope, since answers may arrive after the recorder is freed; one
 * recorder per process). */
static thaw_denied_t denied_create, denied_patch;

/* data: the static verb name ("create" or "patch"), never freed. */
static void on_written(const thaw_kube_result_t *res, void *data) {
  const char *verb = data;
  int patch = strcmp(verb, "patch") == 0;
  if (res->err == THAW_ECANCELED)
    return;
  if (thaw_denied_note(patch ? &denied_patch : &denied_create, res->err,
                       "events", verb, "events", res->message))
    return;
  if (res->err != 0)
    thaw_warn("event not recorded", "error", thaw_err_name(res->err),
              "message", res->message);
}

/* Forgets series past the window, and the oldest when still over the cap. */
static void prune(thaw_events_t *ev, uint64_t now) {
  if (thaw_store_count(ev->series) < THAW_EVENTS_MAX)
    return;
  for (int pass = 0; pass < 2; pass++) {
    const char *key, *oldest = NULL;
    uint64_t oldest_ms = UINT64_MAX;
    void *rec;
    size_t pos = 0;
    char victim[2048] = "";
    while (thaw_store_next(ev->series, &pos, &key, NULL, &rec)) {
      const series_t *s = rec;
      if (pass == 0 && now - s->last_ms > THAW_EVENTS_WINDOW_MS) {
        snprintf(victim, sizeof victim, "%s", key);
        break; /* the store must not change while iterating */
      }
      if (s->last_ms < oldest_ms) {
        oldest_ms = s->last_ms;
        oldest = key;
      }
    }
    if (!victim[0] && oldest)
      snprintf(victim, sizeof victim, "%s", oldest);
    if (victim[0]) {
      void *old;
      if (thaw_store_remove(ev->series, victim, &old, NULL) == 0)
        free(old);
    }
    if (thaw_store_count(ev->series) < THAW_EVENTS_MAX)
      return;
  }
}

static int create(thaw_events_t *ev, const series_t *s,
                  const thaw_events_object_t *about, const char *type,
                  const char *reason, const char *msg, const char *now) {
  const char *uid = about->uid;
  cJSON *o = cJSON_CreateObject();
  cJSON *meta = cJSON_AddObjectToObject(o, "metadata");
  cJSON *obj = cJSON_AddObjectToObject(o, "involvedObject");
  cJSON *src = cJSON_AddObjectToObject(o, "source");
  /* A legacy core/v1 Event (no eventTime): the API server then checks only
   * that a cluster-scoped object's event is in "default". */
  if (meta == NULL || obj == NULL || src == NULL ||
      !cJSON_AddStringToObject(o, "apiVersion", "v1") ||
      !cJSON_AddStringToObject(o, "kind", "Event") ||
      !cJSON_AddStringToObject(meta, "name", s->ev_name) ||
      !cJSON_AddStringToObject(meta, "namespace", s->ns) ||
      !cJSON_AddStringToObject(obj, "apiVersion", about->api_version) ||
      !cJSON_AddStringToObject(obj, "kind", about->kind) ||
      (about->namespace &&
       !cJSON_AddStringToObject(obj, "namespace", about->namespace)) ||
      !cJSON_AddStringToObject(obj, "name", about->name) ||
      (uid && *uid && !cJSON_AddStringToObject(obj, "uid", uid)) ||
      !cJSON_AddStringToObject(o, "type", type) ||
      !cJSON_AddStringToObject(o, "reason", reason) ||
      !cJSON_AddStringToObject(o, "message", msg) ||
      !cJSON_AddStringToObject(src, "component", "thaw-controller") ||
      !cJSON_AddStringToObject(o, "firstTimestamp", s->first) ||
      !cJSON_AddStringToObject(o, "lastTimestamp", now) ||
      !cJSON_AddNumberToObject(o, "count", s->count)) {
    cJSON_Delete(o);
    return THAW_ENOMEM;
  }
  thaw_kube_opts_t opts = {.namespace = s->ns};
  int rc = thaw_kube_create(ev->kube, &thaw_kube_events, &opts, o, on_written,
                            (void *)"create");
  cJSON_Delete(o);
  return rc;
}

static int bump(thaw_events_t *ev, const series_t *s, const char *now) {
  cJSON *p = cJSON_CreateObject();
  if (p == NULL || !cJSON_AddNumberToObject(p, "count", s->count) ||
      !cJSON_AddStringToObject(p, "lastTimestamp", now)) {
    cJSON_Delete(p);
    return THAW_ENOMEM;
  }
  thaw_kube_opts_t opts = {.namespace = s->ns, .name = s->ev_name};
  int rc = thaw_kube_merge_patch(ev->kube, &thaw_kube_events, &opts, p,
                                 on_written, (void *)"patch");
  cJSON_Delete(p);
  return rc;
}

void thaw_events_emit(thaw_events_t *ev, const char *name, const char *uid,
                      const char *type, const char *reason,
                      const char *message) {
  thaw_events_object_t ci = {.api_version = "thaw.dev/v1alpha1",
                             .kind = "CachedImage",
                             .name = name,
                             .uid = uid};
  thaw_events_emit_object(ev, &ci, type, reason, message);
}

void thaw_events_emit_object(thaw_events_t *ev,
                             const thaw_events_object_t *obj,
                             const char *type, const char *reason,
                             const char *message) {
  const char *name = obj->name,
             *ns = obj->namespace ? obj->namespace : THAW_EVENTS_NAMESPACE;
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  char now[32], msg[MESSAGE_MAX + 1], key[2048];
  thaw_rfc3339(ts.tv_sec, now, sizeof now);
  snprintf(msg, sizeof msg, "%s", message);
  snprintf(key, sizeof key, "%.63s\x1f%.300s\x1f%.60s\x1f%s", ns, name,
           reason, msg);
  uint64_t mono = now_ms();
  series_t *s = thaw_store_get(ev->series, key, NULL);
  if (s != NULL && mono - s->last_ms <= THAW_EVENTS_WINDOW_MS) {
    s->count++;
    s->last_ms = mono;
    if (bump(ev, s, now) != 0)
      thaw_warn("event not recorded", "reason", reason);
    return;
  }
  if (s == NULL) {
    prune(ev, mono);
    if ((s = calloc(1, sizeof *s)) == NULL ||
        thaw_store_put(ev->series, key, 0, s, NULL) < 0) {
      free(s);
      s = NULL;
    }
  }
  series_t one; /* without memory for the series: a plain event */
  series_t *use = s ? s : &one;
  snprintf(use->ns, sizeof use->ns, "%s", ns);
  /* client-go's naming: object name, a dot, the time in hex nanoseconds. */
  snprintf(use->ev_name, sizeof use->ev_name, "%.100s.%llx", name,
           (unsigned long long)ts.tv_sec * 1000000000ull +
               (unsigned long long)ts.tv_nsec);
  snprintf(use->first, sizeof use->first, "%s", now);
  use->count = 1;
  use->last_ms = mono;
  if (create(ev, use, obj, type, reason, msg, now) != 0)
    thaw_warn("event not recorded", "reason", reason);
}
