/* kube.h - asynchronous Kubernetes REST client on libcurl-multi and libuv.
 *
 * One thaw_kube_t serves one uv_loop_t. Every call is non-blocking: it
 * queues an HTTP request and returns; the callback runs later on the loop.
 * As in libuv: when a function that takes a callback returns an error, the
 * callback is never called; when it returns 0, the callback is called exactly
 * once (with THAW_ECANCELED if the client is freed first).
 *
 * Objects and patches are cJSON trees owned by the caller; the client copies
 * what it needs before returning. A result's `body` is owned by the client and
 * valid only during the callback (take it with thaw_kube_result_take_body()). */
#ifndef THAW_KUBE_H
#define THAW_KUBE_H

#include <cjson/cJSON.h>
#include <stddef.h>
#include <uv.h>

#include "kubeconfig.h"

typedef struct thaw_kube thaw_kube_t;
typedef struct thaw_kube_watch thaw_kube_watch_t;

/* A resource type: "" group for core. */
typedef struct {
  const char *group;    /* "", "coordination.k8s.io", "thaw.dev" */
  const char *version;  /* "v1", "v1alpha1" */
  const char *resource; /* plural, lower-case: "pods", "cachedimages" */
  int namespaced;       /* 0 for cluster-scoped kinds */
} thaw_kube_resource_t;

extern const thaw_kube_resource_t thaw_kube_pods, thaw_kube_namespaces,
    thaw_kube_podtemplates, thaw_kube_secrets, thaw_kube_events,
    thaw_kube_leases, thaw_kube_cachedimages;

/* Request options; zero-initialise and set what applies. All strings are
 * copied. `namespace` NULL with a namespaced resource means all namespaces
 * (list/watch only). */
typedef struct {
  const char *namespace;
  const char *name;
  const char *subresource;      /* "status", "ephemeralcontainers" */
  const char *label_selector;   /* "a=b,c!=d" */
  const char *field_selector;   /* "metadata.name=x" */
  const char *resource_version; /* list/watch start, or precondition */
  const char *resource_version_match; /* "NotOlderThan", "Exact" */
  const char *continue_token;
  long limit;                   /* list page size; 0 = server default */
  int dry_run;                  /* adds dryRun=All */
  long timeout_seconds;         /* watch: server-side timeoutSeconds */
  const char *field_manager;
} thaw_kube_opts_t;

/* Outcome of one request. `err` is 0 on 2xx, else a THAW_E* that classifies
 * the failure: THAW_ETRANSPORT (no HTTP answer), THAW_ENOTFOUND (404),
 * THAW_EALREADYEXISTS / THAW_ECONFLICT (409 by Status reason), THAW_EGONE
 * (410), THAW_EINVALID (422), THAW_ETOOMANY (429), THAW_ESERVER (5xx),
 * THAW_EBADREQUEST (400), THAW_EFORBIDDEN (401/403), THAW_EHTTP (other),
 * THAW_EPARSE (2xx with a body that is not JSON), THAW_E2BIG (a body over
 * 128 MiB), THAW_ECANCELED. A client-side timeout is THAW_ETRANSPORT. */
typedef struct {
  int err;
  long http_status;    /* 0 when no response arrived */
  const char *reason;  /* Status.reason, "" when absent */
  const char *message; /* Status.message or a transport message, never NULL */
  long retry_after;    /* seconds from Retry-After or details.retryAfterSeconds; 0 if none */
  cJSON *body;         /* parsed body, or NULL */
} thaw_kube_result_t;

typedef void (*thaw_kube_cb)(const thaw_kube_result_t *res, void *data);

/* Called after every request that was not canceled, with the verb ("get", "list", "create",
 * "update", "patch", "delete", "watch") and the HTTP status (0 on transport
 * failure); for metrics such as thaw_kube_requests_total{verb,code}. */
typedef void (*thaw_kube_observe_cb)(const char *verb, long http_status,
                                     void *data);

/* Creates a client on `loop` with a copy of `cfg`. Returns 0 and sets *out, or
 * THAW_ENOMEM / THAW_ECONFIG. */
int thaw_kube_new(uv_loop_t *loop, const thaw_kube_config_t *cfg,
                  thaw_kube_t **out);

/* Cancels everything outstanding (callbacks run with THAW_ECANCELED before
 * this returns) and frees the client once its uv handles are closed; run the
 * loop afterwards to let them close. thaw_kube_free(NULL) does nothing. */
void thaw_kube_free(thaw_kube_t *k);

void thaw_kube_set_observer(thaw_kube_t *k, thaw_kube_observe_cb cb,
                            void *data);

/* Per-request deadline in ms for non-watch requests (default 30000). */
void thaw_kube_set_timeout(thaw_kube_t *k, long timeout_ms);

int thaw_kube_get(thaw_kube_t *k, const thaw_kube_resource_t *r,
                  const thaw_kube_opts_t *o, thaw_kube_cb cb, void *data);
int thaw_kube_list(thaw_kube_t *k, const thaw_kube_resource_t *r,
                   const thaw_kube_opts_t *o, thaw_kube_cb cb, void *data);
int thaw_kube_create(thaw_kube_t *k, const thaw_kube_resource_t *r,
                     const thaw_kube_opts_t *o, const cJSON *obj,
                     thaw_kube_cb cb, void *data);
/* PUT; the object's metadata.resourceVersion is the precondition. */
int thaw_kube_update(thaw_kube_t *k, const thaw_kube_resource_t *r,
                     const thaw_kube_opts_t *o, const cJSON *obj,
                     thaw_kube_cb cb, void *data);
/* PATCH with application/merge-patch+json (custom resources refuse
 * strategic merge patch). o->name is required. */
int thaw_kube_merge_patch(thaw_kube_t *k, const thaw_kube_resource_t *r,
                          const thaw_kube_opts_t *o, const cJSON *patch,
                          thaw_kube_cb cb, void *data);
/* PATCH with application/json-patch+json (RFC 6902): `ops` is the array of
 * operations; a failed "test" op makes the server refuse the whole patch
 * (422 Invalid), so a write can be made conditional on what was read.
 * o->name is required. */
int thaw_kube_json_patch(thaw_kube_t *k, const thaw_kube_resource_t *r,
                         const thaw_kube_opts_t *o, const cJSON *ops,
                         thaw_kube_cb cb, void *data);
/* With o->resource_version, DeleteOptions carry it as a precondition (409
 * Conflict when the object changed). */
int thaw_kube_delete(thaw_kube_t *k, const thaw_kube_resource_t *r,
                     const thaw_kube_opts_t *o, thaw_kube_cb cb, void *data);

/* Detaches the parsed body from a result so it outlives the callback; the
 * caller then owns it (cJSON_Delete). Returns NULL when there is none. */
cJSON *thaw_kube_result_take_body(const thaw_kube_result_t *res);

/* --- watch ---------------------------------------------------------------
 * GET ...?watch=1&allowWatchBookmarks=true&resourceVersion=RV. The body is
 * decoded as a stream of newline-delimited JSON events that may span chunks.
 *
 * on_event gets each event: type is "ADDED", "MODIFIED", "DELETED",
 * "BOOKMARK" or "ERROR" (whose object is a Status, e.g. code 410 Expired).
 * The object is owned by the watch and valid during the callback only.
 *
 * on_end is called exactly once when the stream is over: err 0 when the
 * server closed it normally (timeoutSeconds elapsed), THAW_EPARSE for an
 * event that is not JSON or is truncated, THAW_E2BIG for an event over
 * THAW_KUBE_MAX_EVENT bytes, THAW_ECANCELED after thaw_kube_watch_stop(),
 * or the error of a non-2xx answer (res describes it). After on_end the
 * watch handle is freed. */
#define THAW_KUBE_MAX_EVENT (3u << 20)

typedef void (*thaw_kube_event_cb)(const char *type, const cJSON *object,
                                   void *data);
typedef void (*thaw_kube_end_cb)(const thaw_kube_result_t *res, void *data);

int thaw_kube_watch(thaw_kube_t *k, const thaw_kube_resource_t *r,
                    const thaw_kube_opts_t *o, thaw_kube_event_cb on_event,
                    thaw_kube_end_cb on_end, void *data,
                    thaw_kube_watch_t **out);

/* Ends a watch; on_end runs (THAW_ECANCELED) before this returns. Calling it
 * from inside on_event is allowed; no further events are delivered. */
void thaw_kube_watch_stop(thaw_kube_watch_t *w);

#endif
