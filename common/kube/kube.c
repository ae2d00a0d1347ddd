/* kube.c - the Kubernetes REST client of kube.h on top of http.h.
 *
 * Owner: the http + kube client module. Every request is one http.h request;
 * http.h tracks them, so freeing the client cancels them all through their
 * on_done. Results are decoded from the apiserver's Status objects. */
#include "kube.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "http.h"
#include "jsonstream.h"
#include "kube_internal.h"
#include "log.h"

const thaw_kube_resource_t thaw_kube_pods = {"", "v1", "pods", 1};
const thaw_kube_resource_t thaw_kube_namespaces = {"", "v1", "namespaces", 0};
const thaw_kube_resource_t thaw_kube_podtemplates = {"", "v1", "podtemplates", 1};
const thaw_kube_resource_t thaw_kube_secrets = {"", "v1", "secrets", 1};
const thaw_kube_resource_t thaw_kube_events = {"", "v1", "events", 1};
const thaw_kube_resource_t thaw_kube_leases = {"coordination.k8s.io", "v1",
                                               "leases", 1};
const thaw_kube_resource_t thaw_kube_cachedimages = {"thaw.dev", "v1alpha1",
                                                     "cachedimages", 0};

#define DEFAULT_TIMEOUT_MS 30000L
#define MAX_BODY (128u << 20) /* a list of every pod of a large cluster */

typedef struct {
  thaw_kube_t *k;
  const char *verb;
  thaw_kube_cb cb;
  void *data;
} kreq_t;

/* ---- URLs -------------------------------------------------------------- */

static void url_put(kube_url_t *u, const char *s, size_t n) {
  if (u->overflow || u->len + n >= sizeof u->buf) {
    u->overflow = 1;
    return;
  }
  memcpy(u->buf + u->len, s, n);
  u->len += n;
  u->buf[u->len] = '\0';
}

static void url_str(kube_url_t *u, const char *s) { url_put(u, s, strlen(s)); }

/* Percent-encodes everything but RFC 3986 unreserved characters, so names,
 * selectors ("a=b,c!=d", "in (x,y)") and continue tokens pass unchanged. */
static void url_esc(kube_url_t *u, const char *s) {
  static const char hex[] = "0123456789ABCDEF";
  for (; *s; s++) {
    unsigned char c = (unsigned char)*s;
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
        (c >= '0' && c <= '9') || c == '-' || c == '.' || c == '_' ||
        c == '~') {
      url_put(u, (const char *)&c, 1);
    } else {
      char e[3] = {'%', hex[c >> 4], hex[c & 15]};
      url_put(u, e, 3);
    }
  }
}

static void url_param(kube_url_t *u, const char *key, const char *val) {
  if (!val || !*val)
    return;
  url_put(u, u->has_query ? "&" : "?", 1);
  u->has_query = 1;
  url_str(u, key);
  url_put(u, "=", 1);
  url_esc(u, val);
}

static void url_long(kube_url_t *u, const char *key, long v) {
  char b[32];
  if (v <= 0)
    return;
  snprintf(b, sizeof b, "%ld", v);
  url_param(u, key, b);
}

int thaw_kube_url(const thaw_kube_t *k, const thaw_kube_resource_t *r,
                  const char *ns, const char *name, const char *sub,
                  kube_url_t *u) {
  memset(u, 0, sizeof *u);
  if (!r || !r->version || !r->resource || (sub && !name))
    return THAW_EINVAL;
  url_str(u, k->cfg.server);
  if (!r->group || !*r->group) {
    url_str(u, "/api/");
  } else {
    url_str(u, "/apis/");
    url_esc(u, r->group);
    url_str(u, "/");
  }
  url_esc(u, r->version);
  if (r->namespaced && ns && *ns) {
    url_str(u, "/namespaces/");
    url_esc(u, ns);
  }
  url_str(u, "/");
  url_esc(u, r->resource);
  if (name) {
    url_str(u, "/");
    url_esc(u, name);
  }
  if (sub) {
    url_str(u, "/");
    url_esc(u, sub);
  }
  return u->overflow ? THAW_EINVAL : 0;
}

void thaw_kube_url_query(kube_url_t *u, const thaw_kube_opts_t *o,
                         int list, int watch) {
  if (watch) {
    url_param(u, "watch", "1");
    url_param(u, "allowWatchBookmarks", "true");
  }
  if (list || watch) {
    url_param(u, "labelSelector", o->label_selector);
    url_param(u, "fieldSelector", o->field_selector);
    url_long(u, "timeoutSeconds", o->timeout_seconds);
  }
  if (list) {
    url_long(u, "limit", o->limit);
    url_param(u, "continue", o->continue_token);
    url_param(u, "resourceVersionMatch", o->resource_version_match);
  }
  url_param(u, "resourceVersion", o->resource_version);
  if (o->dry_run)
    url_param(u, "dryRun", "All");
  url_param(u, "fieldManager", o->field_manager);
}

/* ---- Status decoding --------------------------------------------------- */

static long parse_seconds(const char *s) {
  if (!s)
    return 0;
  char *end;
  long v = strtol(s, &end, 10);
  if (end == s || v < 0 || v > 86400)
    return 0; /* an HTTP-date or junk: let the caller's backoff decide */
  return v;
}

static int classify(long st, const char *reason) {
  if (st >= 200 && st < 300)
    return 0;
  switch (st) {
  case 400:
    return THAW_EBADREQUEST;
  case 401:
  case 403:
    return THAW_EFORBIDDEN;
  case 404:
    return THAW_ENOTFOUND;
  case 409:
    return strcmp(reason, "AlreadyExists") == 0 ? THAW_EALREADYEXISTS
                                                : THAW_ECONFLICT;
  case 410:
    return THAW_EGONE;
  case 422:
    return THAW_EINVALID;
  case 429:
    return THAW_ETOOMANY;
  default:
    return st >= 500 && st < 600 ? THAW_ESERVER : THAW_EHTTP;
  }
}

void thaw_kube_decode(thaw_kube_result_t *res, long status, const char *body,
                      size_t len, const char *retry_after, char *msgbuf,
                      size_t msglen) {
  memset(res, 0, sizeof *res);
  res->http_status = status;
  res->reason = "";
  res->message = "";
  if (body && len)
    res->body = cJSON_ParseWithLength(body, len);
  if (status >= 200 && status < 300) {
    if (body && len && !res->body) {
      res->err = THAW_EPARSE;
      res->message = "response body is not JSON";
    }
    return;
  }
  const cJSON *b = res->body;
  const cJSON *reason = cJSON_GetObjectItemCaseSensitive(b, "reason");
  const cJSON *msg = cJSON_GetObjectItemCaseSensitive(b, "message");
  const cJSON *details = cJSON_GetObjectItemCaseSensitive(b, "details");
  const cJSON *ras = cJSON_GetObjectItemCaseSensitive(details,
                                                      "retryAfterSeconds");
  if (cJSON_IsString(reason))
    res->reason = reason->valuestring;
  if (cJSON_IsString(msg) && *msg->valuestring) {
    res->message = msg->valuestring;
  } else {
    snprintf(msgbuf, msglen, "HTTP %ld", status);
    res->message = msgbuf;
  }
  res->err = classify(status, res->reason);
  res->retry_after = parse_seconds(retry_after);
  if (!res->retry_after && cJSON_IsNumber(ras) && ras->valuedouble > 0 &&
      ras->valuedouble <= 86400)
    res->retry_after = (long)ras->valuedouble;
}

cJSON *thaw_kube_result_take_body(const thaw_kube_result_t *res) {
  /* The result lives in the client's memory; only the pointer moves. */
  thaw_kube_result_t *r = (thaw_kube_result_t *)res;
  cJSON *b = r->body;
  r->body = NULL;
  return b;
}

/* ---- client ------------------------------------------------------------ */

int thaw_kube_new(uv_loop_t *loop, const thaw_kube_config_t *cfg,
                  thaw_kube_t **out) {
  if (!loop || !cfg || !cfg->server || strncmp(cfg->server, "http", 4) != 0)
    return THAW_ECONFIG;
  thaw_kube_t *k = calloc(1, sizeof *k);
  if (!k)
    return THAW_ENOMEM;
  int rc = THAW_ENOMEM;
  k->loop = loop;
  k->timeout_ms = DEFAULT_TIMEOUT_MS;
  if (thaw_kube_config_copy(&k->cfg, cfg))
    goto fail;
  size_t n = strlen(k->cfg.server);
  while (n && k->cfg.server[n - 1] == '/')
    k->cfg.server[--n] = '\0';
  if ((cfg->token || cfg->token_file) &&
      !(k->tokens = thaw_kube_token_cache_new(cfg)))
    goto fail;
  rc = thaw_http_new(loop, &k->http);
  if (rc)
    goto fail;
  *out = k;
  return 0;
fail:
  thaw_kube_token_cache_free(k->tokens);
  thaw_kube_config_free(&k->cfg);
  free(k);
  return rc;
}

void thaw_kube_free(thaw_kube_t *k) {
  if (!k || k->freeing)
    return;
  k->freeing = 1;
  thaw_http_free(k->http); /* every on_done runs with THAW_ECANCELED */
  thaw_kube_token_cache_free(k->tokens);
  thaw_kube_config_free(&k->cfg);
  free(k);
}

void thaw_kube_set_observer(thaw_kube_t *k, thaw_kube_observe_cb cb,
                            void *data) {
  k->observe = cb;
  k->observe_data = data;
}

void thaw_kube_set_timeout(thaw_kube_t *k, long timeout_ms) {
  k->timeout_ms = timeout_ms > 0 ? timeout_ms : DEFAULT_TIMEOUT_MS;
}

int thaw_kube_send(thaw_kube_t *k, thaw_http_opts_t *ho, const char *method,
                   const char *url, const char *ctype, const char *body,
                   thaw_http_req_t **out) {
  char auth[8192];
  const char *hdrs[6];
  int n = 0;
  hdrs[n++] = "Accept: application/json";
  hdrs[n++] = "User-Agent: thaw/" THAW_VERSION;
  if (ctype)
    hdrs[n++] = ctype;
  const char *tok = k->tokens ? thaw_kube_token_get(k->tokens) : NULL;
  if (tok) {
    int w = snprintf(auth, sizeof auth, "Authorization: Bearer %s", tok);
    if (w < 0 || (size_t)w >= sizeof auth)
      return THAW_ECONFIG;
    hdrs[n++] = auth;
  }
  hdrs[n] = NULL;
  ho->method = method;
  ho->url = url;
  ho->headers = hdrs;
  if (body) {
    ho->body = body;
    ho->body_len = strlen(body);
  }
  ho->ca_file = k->cfg.ca_file;
  ho->ca_pem = k->cfg.ca_pem;
  ho->cert_file = k->cfg.cert_file;
  ho->cert_pem = k->cfg.cert_pem;
  ho->key_file = k->cfg.key_file;
  ho->key_pem = k->cfg.key_pem;
  ho->insecure = k->cfg.insecure_skip_tls_verify;
  int rc = thaw_http_start(k->http, ho, out);
  explicit_bzero(auth, sizeof auth); /* http.h has its own copy */
  return rc;
}

static void on_req_done(thaw_http_req_t *hr, const thaw_http_result_t *hres,
                        void *data) {
  kreq_t *q = data;
  thaw_kube_result_t res;
  char msg[64];
  if (hres->err) {
    memset(&res, 0, sizeof res);
    res.err = hres->err == THAW_ECANCELED || hres->err == THAW_E2BIG ||
                      hres->err == THAW_ENOMEM
                  ? hres->err
                  : THAW_ETRANSPORT;
    res.reason = "";
    res.message = hres->message;
    if (res.err == THAW_ETRANSPORT)
      thaw_debug("kube request failed", "verb", q->verb, "error",
                 hres->message);
  } else {
    thaw_kube_decode(&res, hres->status, hres->body, hres->body_len,
                     thaw_http_header(hr, "Retry-After"), msg, sizeof msg);
  }
  if (res.err != THAW_ECANCELED && q->k->observe)
    q->k->observe(q->verb, res.http_status, q->k->observe_data);
  q->cb(&res, q->data); /* may free the client: touch only q and res after */
  cJSON_Delete(res.body);
  free(q);
}

/* Starts a buffered request whose result goes to cb. Takes `body`. */
static int start(thaw_kube_t *k, const char *verb, const char *method,
                 const kube_url_t *u, const char *ctype, char *body,
                 thaw_kube_cb cb, void *data) {
  if (!cb) {
    free(body);
    return THAW_EINVAL;
  }
  kreq_t *q = calloc(1, sizeof *q);
  if (!q) {
    free(body);
    return THAW_ENOMEM;
  }
  q->k = k;
  q->verb = verb;
  q->cb = cb;
  q->data = data;
  thaw_http_opts_t ho = {0};
  ho.timeout_ms = k->timeout_ms;
  ho.max_body = MAX_BODY;
  ho.on_done = on_req_done;
  ho.data = q;
  int rc = thaw_kube_send(k, &ho, method, u->buf, ctype, body, NULL);
  free(body);
  if (rc)
    free(q);
  return rc;
}

static const char *meta_str(const cJSON *obj, const char *key) {
  const cJSON *m = cJSON_GetObjectItemCaseSensitive(obj, "metadata");
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(m, key);
  return cJSON_IsString(v) ? v->valuestring : NULL;
}

/* Builds the URL of one named object (name and namespace from the options,
 * else from the object's metadata). */
static int object_url(thaw_kube_t *k, const thaw_kube_resource_t *r,
                      const thaw_kube_opts_t *o, const cJSON *obj,
                      int need_name, kube_url_t *u) {
  const char *ns = o->namespace ? o->namespace : meta_str(obj, "namespace");
  const char *name = o->name ? o->name : (need_name ? meta_str(obj, "name") : NULL);
  if (!k || !r || (r->namespaced && !ns) || (need_name && (!name || !*name)))
    return THAW_EINVAL;
  int rc = thaw_kube_url(k, r, ns, name, name ? o->subresource : NULL, u);
  return rc;
}

static const thaw_kube_opts_t no_opts;

int thaw_kube_get(thaw_kube_t *k, const thaw_kube_resource_t *r,
                  const thaw_kube_opts_t *o, thaw_kube_cb cb, void *data) {
  kube_url_t u;
  o = o ? o : &no_opts;
  int rc = object_url(k, r, o, NULL, 1, &u);
  if (rc)
    return rc;
  thaw_kube_url_query(&u, o, 0, 0);
  return u.overflow ? THAW_EINVAL : start(k, "get", "GET", &u, NULL, NULL, cb, data);
}

int thaw_kube_list(thaw_kube_t *k, const thaw_kube_resource_t *r,
                   const thaw_kube_opts_t *o, thaw_kube_cb cb, void *data) {
  kube_url_t u;
  o = o ? o : &no_opts;
  if (!k || !r)
    return THAW_EINVAL;
  int rc = thaw_kube_url(k, r, o->namespace, NULL, NULL, &u);
  if (rc)
    return rc;
  thaw_kube_url_query(&u, o, 1, 0);
  return u.overflow ? THAW_EINVAL : start(k, "list", "GET", &u, NULL, NULL, cb, data);
}

/* Shared by create, update and patch: a JSON body sent to an object URL. */
static int send_object(thaw_kube_t *k, const thaw_kube_resource_t *r,
                       const thaw_kube_opts_t *o, const cJSON *obj,
                       const char *verb, const char *method, int need_name,
                       const char *ctype, thaw_kube_cb cb, void *data) {
  kube_url_t u;
  o = o ? o : &no_opts;
  if (!obj)
    return THAW_EINVAL;
  /* create posts to the collection unless a subresource is named */
  int rc = object_url(k, r, o, obj, need_name, &u);
  if (rc)
    return rc;
  thaw_kube_opts_t q = *o;
  q.resource_version = NULL; /* the precondition travels in the body */
  thaw_kube_url_query(&u, &q, 0, 0);
  if (u.overflow)
    return THAW_EINVAL;
  char *body = cJSON_PrintUnformatted(obj);
  if (!body)
    return THAW_ENOMEM;
  return start(k, verb, method, &u, ctype, body, cb, data);
}

int thaw_kube_create(thaw_kube_t *k, const thaw_kube_resource_t *r,
                     const thaw_kube_opts_t *o, const cJSON *obj,
                     thaw_kube_cb cb, void *data) {
  return send_object(k, r, o, obj, "create", "POST", 0,
                     "Content-Type: application/json", cb, data);
}

int thaw_kube_update(thaw_kube_t *k, const thaw_kube_resource_t *r,
                     const thaw_kube_opts_t *o, const cJSON *obj,
                     thaw_kube_cb cb, void *data) {
  return send_object(k, r, o, obj, "update", "PUT", 1,
                     "Content-Type: application/json", cb, data);
}

int thaw_kube_merge_patch(thaw_kube_t *k, const thaw_kube_resource_t *r,
                          const thaw_kube_opts_t *o, const cJSON *patch,
                          thaw_kube_cb cb, void *data) {
  thaw_kube_opts_t q = o ? *o : no_opts;
  if (!q.name)
    return THAW_EINVAL; /* a patch's metadata.name is not the target */
  return send_object(k, r, &q, patch, "patch", "PATCH", 1,
                     "Content-Type: application/merge-patch+json", cb, data);
}

int thaw_kube_json_patch(thaw_kube_t *k, const thaw_kube_resource_t *r,
                         const thaw_kube_opts_t *o, const cJSON *ops,
                         thaw_kube_cb cb, void *data) {
  thaw_kube_opts_t q = o ? *o : no_opts;
  if (!q.name || !cJSON_IsArray(ops))
    return THAW_EINVAL;
  return send_object(k, r, &q, ops, "patch", "PATCH", 1,
                     "Content-Type: application/json-patch+json", cb, data);
}

int thaw_kube_delete(thaw_kube_t *k, const thaw_kube_resource_t *r,
                     const thaw_kube_opts_t *o, thaw_kube_cb cb, void *data) {
  kube_url_t u;
  o = o ? o : &no_opts;
  int rc = object_url(k, r, o, NULL, 1, &u);
  if (rc)
    return rc;
  thaw_kube_opts_t q = *o;
  q.resource_version = NULL;
  q.field_manager = NULL; /* DeleteOptions has none */
  thaw_kube_url_query(&u, &q, 0, 0);
  if (u.overflow)
    return THAW_EINVAL;
  char *body = NULL;
  const char *ctype = NULL;
  if (o->resource_version) {
    /* DeleteOptions with a precondition: delete only this version */
    cJSON *d = cJSON_CreateObject();
    cJSON *p = cJSON_AddObjectToObject(d, "preconditions");
    if (!d || !p || !cJSON_AddStringToObject(d, "apiVersion", "v1") ||
        !cJSON_AddStringToObject(d, "kind", "DeleteOptions") ||
        !cJSON_AddStringToObject(p, "resourceVersion", o->resource_version) ||
        !(body = cJSON_PrintUnformatted(d))) {
      cJSON_Delete(d);
      return THAW_ENOMEM;
    }
    cJSON_Delete(d);
    ctype = "Content-Type: application/json";
  }
  return start(k, "delete", "DELETE", &u, ctype, body, cb, data);
}
