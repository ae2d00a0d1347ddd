/* kube_internal.h - what kube.c shares with kubewatch.c; not a public API.
 *
 * Owner: the http + kube client module. */
#ifndef THAW_KUBE_INTERNAL_H
#define THAW_KUBE_INTERNAL_H

#include "http.h"
#include "kube.h"

#define THAW_KUBE_MAX_URL 8192

struct thaw_kube {
  uv_loop_t *loop;
  thaw_http_t *http;
  thaw_kube_config_t cfg;
  thaw_kube_token_cache_t *tokens;
  thaw_kube_observe_cb observe;
  void *observe_data;
  long timeout_ms;
  int freeing;
};

/* A URL of at most THAW_KUBE_MAX_URL - 1 bytes; `overflow` is set (and the
 * URL must not be used) when more was written. */
typedef struct {
  char buf[THAW_KUBE_MAX_URL];
  size_t len;
  int has_query, overflow;
} kube_url_t;

/* server + /api/v1 or /apis/G/V [+ /namespaces/NS] + /resource [+ /name
 * [+ /sub]], each segment percent-encoded. Returns 0 or THAW_EINVAL. */
int thaw_kube_url(const thaw_kube_t *k, const thaw_kube_resource_t *r,
                  const char *ns, const char *name, const char *sub,
                  kube_url_t *u);

/* Appends the query parameters of `o` that apply (selectors, limit and
 * continue for a list; watch=1&allowWatchBookmarks=true for a watch). */
void thaw_kube_url_query(kube_url_t *u, const thaw_kube_opts_t *o, int list,
                         int watch);

/* Fills `res` from an HTTP answer: err, reason, message, retry_after and the
 * parsed body (owned by res; cJSON_Delete it). msgbuf holds a fallback
 * message and must outlive res. */
void thaw_kube_decode(thaw_kube_result_t *res, long status, const char *body,
                      size_t len, const char *retry_after, char *msgbuf,
                      size_t msglen);

/* Fills in method, URL, headers (Accept, Content-Type line `ctype`, bearer
 * token) and TLS from the client's config, then starts the request. */
int thaw_kube_send(thaw_kube_t *k, thaw_http_opts_t *ho, const char *method,
                   const char *url, const char *ctype, const char *body,
                   thaw_http_req_t **out);

#endif
