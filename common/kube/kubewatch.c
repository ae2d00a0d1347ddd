/* kubewatch.c - watch streams: a long GET decoded event by event.
 *
 * Owner: the http + kube client module. A watch is freed only when all of
 * these hold: on_end has run (`ended`), its http request is gone (`http`
 * NULL) and no frame of ours is using it (`holds`), because users stop
 * watches and free clients from inside on_event. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "jsonstream.h"
#include "kube_internal.h"
#include "log.h"

#define MAX_ERROR_BODY (1u << 20) /* a Status; more is not kept */
#define WATCH_SLACK_MS 30000L     /* beyond the server's timeoutSeconds */

struct thaw_kube_watch {
  thaw_kube_t *k;
  thaw_http_req_t *http;
  thaw_kube_event_cb on_event;
  thaw_kube_end_cb on_end;
  void *data;
  thaw_jsonstream_t js;
  char *resource; /* for logs */
  long status;
  int streaming; /* a 2xx arrived: the body is events */
  int ended, holds;
  char *ebody; /* a non-2xx body */
  size_t elen;
};

static void watch_maybe_free(thaw_kube_watch_t *w) {
  if (w->holds || !w->ended || w->http)
    return;
  thaw_jsonstream_free(&w->js);
  free(w->ebody);
  free(w->resource);
  free(w);
}

static int on_line(cJSON *doc, void *data) {
  thaw_kube_watch_t *w = data;
  const cJSON *type = cJSON_GetObjectItemCaseSensitive(doc, "type");
  const cJSON *obj = cJSON_GetObjectItemCaseSensitive(doc, "object");
  if (!cJSON_IsString(type) || !cJSON_IsObject(obj))
    return THAW_EPARSE; /* JSON, but not a watch event */
  w->on_event(type->valuestring, obj, w->data);
  return w->ended ? THAW_ECANCELED : 0;
}

static int on_response(thaw_http_req_t *hr, long status, void *data) {
  (void)hr;
  thaw_kube_watch_t *w = data;
  w->status = status;
  w->streaming = status >= 200 && status < 300;
  return 0;
}

static int on_data(thaw_http_req_t *hr, const char *p, size_t n, void *data) {
  (void)hr;
  thaw_kube_watch_t *w = data;
  if (!w->streaming) {
    size_t keep = n;
    if (w->elen + keep > MAX_ERROR_BODY)
      keep = MAX_ERROR_BODY - w->elen;
    if (keep) {
      char *b = realloc(w->ebody, w->elen + keep + 1);
      if (!b)
        return THAW_ENOMEM;
      memcpy(b + w->elen, p, keep);
      w->elen += keep;
      b[w->elen] = '\0';
      w->ebody = b;
    }
    return 0;
  }
  w->holds++;
  int rc = thaw_jsonstream_feed(&w->js, p, n, on_line, w);
  w->holds--;
  if (w->ended) { /* stopped, or the client freed, from on_event */
    watch_maybe_free(w);
    return THAW_ECANCELED;
  }
  return rc;
}

static void on_done(thaw_http_req_t *hr, const thaw_http_result_t *hres,
                    void *data) {
  thaw_kube_watch_t *w = data;
  w->http = NULL;
  if (w->ended) { /* thaw_kube_watch_stop() already ran on_end */
    watch_maybe_free(w);
    return;
  }
  w->ended = 1;
  w->holds++;
  thaw_kube_result_t res;
  char msg[64];
  memset(&res, 0, sizeof res);
  res.reason = "";
  res.http_status = w->status;
  res.message = "";
  if (hres->err == THAW_ECANCELED) {
    res.err = THAW_ECANCELED;
    res.message = "canceled";
  } else if (w->streaming && (hres->err == 0 || hres->err == THAW_ETRANSPORT ||
                              hres->err == THAW_ETIMEDOUT)) {
    /* The body ended, cleanly or cut: an unfinished event is a parse error
     * either way; otherwise a cut stream is a transport error. */
    res.err = thaw_jsonstream_end(&w->js);
    if (res.err) {
      res.message = "truncated watch event at end of stream";
    } else if (hres->err) {
      res.err = THAW_ETRANSPORT;
      res.message = hres->message;
    }
  } else if (hres->err) {
    res.err = hres->err == THAW_ETIMEDOUT ? THAW_ETRANSPORT : hres->err;
    res.message = hres->message;
  } else {
    thaw_kube_decode(&res, w->status, w->ebody, w->elen,
                     thaw_http_header(hr, "Retry-After"), msg, sizeof msg);
  }
  if (res.err && res.err != THAW_ECANCELED) {
    char st[24];
    snprintf(st, sizeof st, "%ld", w->status);
    /* a 403 repeats until RBAC is fixed: the informer logs it once */
    thaw_log(res.err == THAW_EFORBIDDEN ? THAW_LOG_DEBUG : THAW_LOG_WARN,
             "kube watch ended", "resource", w->resource, "error",
             thaw_err_name(res.err), "status", st, "message", res.message,
             (char *)NULL);
  }
  if (res.err != THAW_ECANCELED && w->k->observe)
    w->k->observe("watch", w->status, w->k->observe_data);
  w->on_end(&res, w->data); /* may free the client */
  cJSON_Delete(res.body);
  w->holds--;
  watch_maybe_free(w);
}

int thaw_kube_watch(thaw_kube_t *k, const thaw_kube_resource_t *r,
                    const thaw_kube_opts_t *o, thaw_kube_event_cb on_event,
                    thaw_kube_end_cb on_end, void *data,
                    thaw_kube_watch_t **out) {
  static const thaw_kube_opts_t none;
  kube_url_t u;
  o = o ? o : &none;
  if (!k || !r || !on_event || !on_end)
    return THAW_EINVAL;
  int rc = thaw_kube_url(k, r, o->namespace, NULL, NULL, &u);
  if (rc)
    return rc;
  thaw_kube_url_query(&u, o, 0, 1);
  if (u.overflow)
    return THAW_EINVAL;
  thaw_kube_watch_t *w = calloc(1, sizeof *w);
  if (!w || !(w->resource = strdup(r->resource))) {
    free(w);
    return THAW_ENOMEM;
  }
  w->k = k;
  w->on_event = on_event;
  w->on_end = on_end;
  w->data = data;
  thaw_jsonstream_init(&w->js, THAW_KUBE_MAX_EVENT);
  thaw_http_opts_t ho = {0};
  /* No low-speed limit: a quiet watch is normal. TCP keepalive (http.c)
   * finds dead peers; the deadline backs up timeoutSeconds. */
  if (o->timeout_seconds > 0)
    ho.timeout_ms = o->timeout_seconds * 1000 + WATCH_SLACK_MS;
  ho.on_response = on_response;
  ho.on_data = on_data;
  ho.on_done = on_done;
  ho.data = w;
  rc = thaw_kube_send(k, &ho, "GET", u.buf, NULL, NULL, &w->http);
  if (rc) {
    free(w->resource);
    free(w);
    return rc;
  }
  if (out)
    *out = w;
  return 0;
}

void thaw_kube_watch_stop(thaw_kube_watch_t *w) {
  if (!w || w->ended)
    return;
  w->ended = 1;
  w->holds++;
  if (w->http)
    thaw_http_cancel(w->http); /* on_done sees `ended` and only detaches */
  thaw_kube_result_t res = {.err = THAW_ECANCELED,
                            .http_status = w->status,
                            .reason = "",
                            .message = "canceled"};
  w->on_end(&res, w->data);
  w->holds--;
  watch_maybe_free(w);
}
