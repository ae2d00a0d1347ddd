/* http.c - libcurl multi-socket requests driven by a uv loop.
 *
 * curl tells us which sockets to watch (socket_cb) and when to wake it
 * (timer_cb); uv tells curl when a socket is ready (on_poll) or the timer
 * fired (on_timeout). Requests are removed from the multi handle only when
 * no curl call is on the stack (`depth` == 0): curl forbids removing a
 * handle from inside its own callbacks, and users cancel from callbacks.
 * For the same reason a request started from a callback (an informer handler
 * that creates an object, say) is attached to the multi handle only then. */
#include "http.h"

#include <curl/curl.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "error.h"

#define DEFAULT_MAX_BUFFERED (64u << 20)
#define MAX_HEADER_BYTES (64u << 10)
#define DEFAULT_CONNECT_MS 10000L

typedef struct sock_ctx {
  uv_poll_t poll;
  curl_socket_t fd;
  thaw_http_t *h;
  int closing;
  struct sock_ctx *prev, *next;
} sock_ctx_t;

struct thaw_http {
  uv_loop_t *loop;
  CURLM *multi;
  uv_timer_t timer;
  thaw_http_req_t *reqs; /* every request still attached to `multi` */
  sock_ctx_t *socks;     /* every poll handle not yet closing */
  int depth;             /* > 0 while our code runs under a uv callback */
  int freeing;           /* thaw_http_free() was called */
  int open_handles;      /* uv handles not yet closed; h is freed at 0 */
};

struct thaw_http_req {
  thaw_http_t *h;
  CURL *easy;
  struct curl_slist *hdrs;
  thaw_http_req_t *prev, *next;
  thaw_http_response_cb on_response;
  thaw_http_data_cb on_data;
  thaw_http_read_cb read_cb;
  thaw_http_done_cb on_done;
  void *data;
  long status;
  int responded, canceled, abort_err;
  int unattached; /* started under a curl callback: added by leave() */
  size_t max_body, total;
  char *body;
  size_t body_len, body_cap;
  char *hb; /* response headers: "name\0value\0" pairs */
  size_t hb_len, hb_cap;
  char errbuf[CURL_ERROR_SIZE];
};

static void leave(thaw_http_t *h);

/* ---- memory helpers --------------------------------------------------- */

/* Appends n bytes to a growable buffer, doubling it (amortised O(1)). */
static int buf_append(char **b, size_t *len, size_t *cap, const char *p,
                      size_t n) {
  if (*len + n + 1 > *cap) {
    size_t c = *cap ? *cap : 1024;
    while (c < *len + n + 1)
      c *= 2;
    char *nb = realloc(*b, c);
    if (!nb)
      return THAW_ENOMEM;
    *b = nb;
    *cap = c;
  }
  memcpy(*b + *len, p, n);
  *len += n;
  (*b)[*len] = '\0';
  return 0;
}

/* ---- uv handles ------------------------------------------------------- */

static void maybe_release(thaw_http_t *h) {
  if (h->freeing && h->open_handles == 0 && h->depth == 0)
    free(h);
}

static void on_handle_closed(uv_handle_t *hd) {
  thaw_http_t *h;
  if (hd->type == UV_POLL) {
    sock_ctx_t *s = hd->data;
    h = s->h;
    free(s);
  } else {
    h = hd->data;
  }
  h->open_handles--;
  maybe_release(h);
}

static void sock_close(sock_ctx_t *s) {
  if (s->closing)
    return;
  s->closing = 1;
  if (s->prev)
    s->prev->next = s->next;
  else
    s->h->socks = s->next;
  if (s->next)
    s->next->prev = s->prev;
  uv_poll_stop(&s->poll);
  uv_close((uv_handle_t *)&s->poll, on_handle_closed);
}

/* ---- finishing requests ------------------------------------------------ */

static void req_unlink_free(thaw_http_req_t *r) {
  thaw_http_t *h = r->h;
  if (r->prev)
    r->prev->next = r->next;
  else
    h->reqs = r->next;
  if (r->next)
    r->next->prev = r->prev;
  if (h->multi)
    curl_multi_remove_handle(h->multi, r->easy);
  curl_easy_cleanup(r->easy);
  curl_slist_free_all(r->hdrs); /* may hold credentials: don't keep them */
  free(r->body);
  free(r->hb);
  free(r);
}

static void emit_response(thaw_http_req_t *r) {
  r->responded = 1;
  long st = 0;
  curl_easy_getinfo(r->easy, CURLINFO_RESPONSE_CODE, &st);
  if (st)
    r->status = st;
  if (r->on_response) {
    int e = r->on_response(r, r->status, r->data);
    if (e < 0 && !r->abort_err)
      r->abort_err = e;
  }
}

static void finish(thaw_http_req_t *r, CURLcode rc) {
  thaw_http_result_t res = {0};
  if (r->canceled)
    return; /* on_done already ran; leave() reaps it */
  long st = 0;
  curl_easy_getinfo(r->easy, CURLINFO_RESPONSE_CODE, &st);
  if (st)
    r->status = st;
  if (rc == CURLE_OK && !r->responded)
    emit_response(r);
  if (r->canceled)
    return;
  res.status = r->status;
  res.message = "";
  if (r->abort_err) {
    res.err = r->abort_err;
    res.message = thaw_strerror(r->abort_err);
  } else if (rc == CURLE_OK) {
    res.err = 0;
    res.body = r->body ? r->body : (r->on_data ? NULL : "");
    res.body_len = r->body_len;
  } else {
    res.err = rc == CURLE_OPERATION_TIMEDOUT ? THAW_ETIMEDOUT : THAW_ETRANSPORT;
    res.message = r->errbuf[0] ? r->errbuf : curl_easy_strerror(rc);
  }
  r->canceled = 1; /* no callback after on_done */
  r->on_done(r, &res, r->data);
}

static void check_multi_info(thaw_http_t *h) {
  CURLMsg *m;
  int left;
  while (!h->freeing && (m = curl_multi_info_read(h->multi, &left))) {
    if (m->msg != CURLMSG_DONE)
      continue;
    thaw_http_req_t *r = NULL;
    curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&r);
    CURLcode rc = m->data.result;
    if (r)
      finish(r, rc); /* marks r canceled; freed by leave() */
  }
}

static void teardown(thaw_http_t *h) {
  while (h->reqs)
    req_unlink_free(h->reqs);
  curl_multi_cleanup(h->multi); /* may still call socket_cb (REMOVE) */
  h->multi = NULL;
  while (h->socks)
    sock_close(h->socks);
  uv_timer_stop(&h->timer);
  uv_close((uv_handle_t *)&h->timer, on_handle_closed);
}

/* Runs when the outermost entry into this module unwinds: removes finished
 * and canceled requests, then tears down if thaw_http_free() was called. */
static void leave(thaw_http_t *h) {
  if (--h->depth > 0)
    return;
  h->depth++; /* curl_multi_remove_handle may call socket_cb */
  thaw_http_req_t *r = h->reqs, *next;
  for (; r; r = next) {
    next = r->next;
    if (r->canceled)
      req_unlink_free(r);
  }
  /* on_done below may start more requests (at the head): rescan until none */
  for (int again = 1; again && !h->freeing;) {
    again = 0;
    for (r = h->reqs; r; r = r->next) {
      if (!r->unattached)
        continue;
      r->unattached = 0;
      if (curl_multi_add_handle(h->multi, r->easy) != CURLM_OK) {
        thaw_http_result_t res = {.err = THAW_ENOMEM, .message = "out of memory"};
        r->canceled = 1;
        r->on_done(r, &res, r->data); /* reaped by a later leave() */
        again = 1;
        break;
      }
    }
  }
  if (h->freeing && h->multi)
    teardown(h);
  h->depth--;
  maybe_release(h);
}

/* ---- curl <-> uv glue -------------------------------------------------- */

static void on_timeout(uv_timer_t *t) {
  thaw_http_t *h = t->data;
  int running;
  h->depth++;
  curl_multi_socket_action(h->multi, CURL_SOCKET_TIMEOUT, 0, &running);
  check_multi_info(h);
  leave(h);
}

static void on_poll(uv_poll_t *p, int status, int events) {
  sock_ctx_t *s = p->data;
  thaw_http_t *h = s->h;
  int flags = 0, running;
  if (status < 0)
    flags = CURL_CSELECT_ERR;
  if (events & UV_READABLE)
    flags |= CURL_CSELECT_IN;
  if (events & UV_WRITABLE)
    flags |= CURL_CSELECT_OUT;
  h->depth++;
  curl_multi_socket_action(h->multi, s->fd, flags, &running);
  check_multi_info(h);
  leave(h);
}

static int socket_cb(CURL *e, curl_socket_t fd, int what, void *userp,
                     void *socketp) {
  (void)e;
  thaw_http_t *h = userp;
  sock_ctx_t *s = socketp;
  if (what == CURL_POLL_REMOVE) {
    if (s) {
      curl_multi_assign(h->multi, fd, NULL);
      sock_close(s);
    }
    return 0;
  }
  if (!s) {
    s = calloc(1, sizeof *s);
    if (!s)
      return -1;
    if (uv_poll_init_socket(h->loop, &s->poll, fd) < 0) {
      free(s);
      return -1;
    }
    s->fd = fd;
    s->h = h;
    s->poll.data = s;
    s->next = h->socks;
    if (h->socks)
      h->socks->prev = s;
    h->socks = s;
    h->open_handles++;
    curl_multi_assign(h->multi, fd, s);
  }
  int ev = 0;
  if (what == CURL_POLL_IN || what == CURL_POLL_INOUT)
    ev |= UV_READABLE;
  if (what == CURL_POLL_OUT || what == CURL_POLL_INOUT)
    ev |= UV_WRITABLE;
  return uv_poll_start(&s->poll, ev, on_poll) < 0 ? -1 : 0;
}

static int timer_cb(CURLM *m, long timeout_ms, void *userp) {
  (void)m;
  thaw_http_t *h = userp;
  if (h->freeing)
    return 0;
  if (timeout_ms < 0)
    uv_timer_stop(&h->timer);
  else
    uv_timer_start(&h->timer, on_timeout, (uint64_t)timeout_ms, 0);
  return 0;
}

/* ---- curl easy callbacks ---------------------------------------------- */

static size_t on_header(char *p, size_t sz, size_t n, void *ud) {
  thaw_http_req_t *r = ud;
  size_t len = sz * n, l = len;
  if (r->canceled)
    return 0;
  if (len >= 5 && memcmp(p, "HTTP/", 5) == 0) {
    r->hb_len = 0; /* a new response (redirect, 1xx): forget the old one */
    return len;
  }
  while (l && (p[l - 1] == '\n' || p[l - 1] == '\r'))
    l--;
  const char *colon = memchr(p, ':', l);
  if (!colon || colon == p)
    return len; /* blank line or folded continuation */
  size_t nl = (size_t)(colon - p);
  const char *v = colon + 1, *end = p + l;
  while (v < end && (*v == ' ' || *v == '\t'))
    v++;
  while (end > v && (end[-1] == ' ' || end[-1] == '\t'))
    end--;
  if (r->hb_len + l + 2 > MAX_HEADER_BYTES)
    return len; /* ignore headers past the cap rather than fail */
  char z = '\0';
  if (buf_append(&r->hb, &r->hb_len, &r->hb_cap, p, nl) ||
      buf_append(&r->hb, &r->hb_len, &r->hb_cap, &z, 1) ||
      buf_append(&r->hb, &r->hb_len, &r->hb_cap, v, (size_t)(end - v)) ||
      buf_append(&r->hb, &r->hb_len, &r->hb_cap, &z, 1)) {
    r->abort_err = THAW_ENOMEM;
    return 0;
  }
  return len;
}

static size_t on_write(char *p, size_t sz, size_t n, void *ud) {
  thaw_http_req_t *r = ud;
  size_t len = sz * n;
  if (r->canceled || r->abort_err)
    return 0;
  if (!r->responded) {
    emit_response(r);
    if (r->canceled || r->abort_err)
      return 0;
  }
  if (r->max_body && len > r->max_body - r->total) {
    r->abort_err = THAW_E2BIG;
    return 0;
  }
  if (r->on_data) {
    int e = r->on_data(r, p, len, r->data);
    if (r->canceled)
      return 0;
    if (e == THAW_EAGAIN)
      return CURL_WRITEFUNC_PAUSE;
    if (e < 0) {
      r->abort_err = e;
      return 0;
    }
  } else if (buf_append(&r->body, &r->body_len, &r->body_cap, p, len)) {
    r->abort_err = THAW_ENOMEM;
    return 0;
  }
  r->total += len;
  return len;
}

static size_t on_read(char *buf, size_t sz, size_t n, void *ud) {
  thaw_http_req_t *r = ud;
  if (r->canceled)
    return CURL_READFUNC_ABORT;
  ssize_t got = r->read_cb(r, buf, sz * n, r->data);
  if (r->canceled)
    return CURL_READFUNC_ABORT;
  if (got == THAW_EAGAIN)
    return CURL_READFUNC_PAUSE;
  if (got < 0) {
    r->abort_err = (int)got;
    return CURL_READFUNC_ABORT;
  }
  return (size_t)got > sz * n ? CURL_READFUNC_ABORT : (size_t)got;
}

/* ---- public API ------------------------------------------------------- */

int thaw_http_new(uv_loop_t *loop, thaw_http_t **out) {
  static int curl_ready;
  if (!curl_ready) {
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
      return THAW_ENOMEM;
    curl_ready = 1;
  }
  thaw_http_t *h = calloc(1, sizeof *h);
  if (!h)
    return THAW_ENOMEM;
  h->loop = loop;
  h->multi = curl_multi_init();
  if (!h->multi)
    goto fail;
  uv_timer_init(loop, &h->timer);
  h->timer.data = h;
  h->open_handles = 1;
  curl_multi_setopt(h->multi, CURLMOPT_SOCKETFUNCTION, socket_cb);
  curl_multi_setopt(h->multi, CURLMOPT_SOCKETDATA, h);
  curl_multi_setopt(h->multi, CURLMOPT_TIMERFUNCTION, timer_cb);
  curl_multi_setopt(h->multi, CURLMOPT_TIMERDATA, h);
  curl_multi_setopt(h->multi, CURLMOPT_PIPELINING, (long)CURLPIPE_MULTIPLEX);
  *out = h;
  return 0;
fail:
  free(h);
  return THAW_ENOMEM;
}

void thaw_http_set_max_host_connections(thaw_http_t *h, long n) {
  curl_multi_setopt(h->multi, CURLMOPT_MAX_HOST_CONNECTIONS, n);
}

void thaw_http_free(thaw_http_t *h) {
  if (!h || h->freeing)
    return;
  h->depth++;
  h->freeing = 1; /* from here thaw_http_start() refuses new requests */
  for (thaw_http_req_t *r = h->reqs; r; r = r->next)
    thaw_http_cancel(r);
  leave(h);
}

void thaw_http_cancel(thaw_http_req_t *r) {
  if (!r || r->canceled)
    return;
  thaw_http_t *h = r->h;
  thaw_http_result_t res = {.err = THAW_ECANCELED,
                            .status = r->status,
                            .message = "canceled"};
  r->canceled = 1;
  h->depth++; /* keep r alive until on_done returns */
  r->on_done(r, &res, r->data);
  leave(h);
}

void thaw_http_unpause(thaw_http_req_t *r) {
  if (!r || r->canceled)
    return;
  thaw_http_t *h = r->h;
  h->depth++;
  curl_easy_pause(r->easy, CURLPAUSE_CONT);
  leave(h);
}

const char *thaw_http_header(const thaw_http_req_t *r, const char *name) {
  size_t i = 0;
  while (i < r->hb_len) {
    const char *n = r->hb + i;
    const char *v = n + strlen(n) + 1;
    if (strcasecmp(n, name) == 0)
      return v;
    i = (size_t)(v + strlen(v) + 1 - r->hb);
  }
  return NULL;
}

static int set_blob(CURL *e, CURLoption opt, const char *pem) {
  struct curl_blob b = {.data = (void *)pem, .len = strlen(pem),
                        .flags = CURL_BLOB_COPY};
  return curl_easy_setopt(e, opt, &b) == CURLE_OK ? 0 : THAW_EINVAL;
}

/* Applies every option to the easy handle; returns 0 or THAW_E*. */
static int configure(thaw_http_req_t *r, const thaw_http_opts_t *o) {
  CURL *e = r->easy;
  int rc = 0;
  const char *m = o->method ? o->method : "GET";
#define SET(opt, val)                                                          \
  do {                                                                         \
    if (curl_easy_setopt(e, opt, val) != CURLE_OK)                             \
      rc = THAW_EINVAL;                                                        \
  } while (0)
  SET(CURLOPT_URL, o->url);
  SET(CURLOPT_PROTOCOLS_STR, "http,https");
  SET(CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
  SET(CURLOPT_PRIVATE, r);
  SET(CURLOPT_ERRORBUFFER, r->errbuf);
  SET(CURLOPT_NOSIGNAL, 1L);
  SET(CURLOPT_TCP_KEEPALIVE, 1L);
  SET(CURLOPT_TCP_KEEPIDLE, 30L);
  SET(CURLOPT_TCP_KEEPINTVL, 10L);
  SET(CURLOPT_HEADERFUNCTION, on_header);
  SET(CURLOPT_HEADERDATA, r);
  SET(CURLOPT_WRITEFUNCTION, on_write);
  SET(CURLOPT_WRITEDATA, r);
  SET(CURLOPT_SSLVERSION, (long)CURL_SSLVERSION_TLSv1_2);
  SET(CURLOPT_CONNECTTIMEOUT_MS,
      o->connect_timeout_ms > 0 ? o->connect_timeout_ms : DEFAULT_CONNECT_MS);
  if (o->timeout_ms > 0)
    SET(CURLOPT_TIMEOUT_MS, o->timeout_ms);
  if (o->low_speed_secs > 0) {
    SET(CURLOPT_LOW_SPEED_LIMIT, o->low_speed_bytes > 0 ? o->low_speed_bytes : 1L);
    SET(CURLOPT_LOW_SPEED_TIME, o->low_speed_secs);
  }
  if (o->max_redirects > 0) {
    SET(CURLOPT_FOLLOWLOCATION, 1L);
    SET(CURLOPT_MAXREDIRS, o->max_redirects);
  }
  switch (o->version) {
  case THAW_HTTP_1_1:
    SET(CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1);
    break;
  case THAW_HTTP_2_PRIOR:
    SET(CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_2_PRIOR_KNOWLEDGE);
    break;
  default:
    SET(CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_2TLS);
    SET(CURLOPT_PIPEWAIT, 1L); /* prefer multiplexing over a new connection */
    break;
  }
  if (o->insecure) {
    SET(CURLOPT_SSL_VERIFYPEER, 0L);
    SET(CURLOPT_SSL_VERIFYHOST, 0L);
  }
  if (o->ca_pem && !rc)
    rc = set_blob(e, CURLOPT_CAINFO_BLOB, o->ca_pem);
  else if (o->ca_file)
    SET(CURLOPT_CAINFO, o->ca_file);
  if (o->cert_pem && !rc)
    rc = set_blob(e, CURLOPT_SSLCERT_BLOB, o->cert_pem);
  else if (o->cert_file)
    SET(CURLOPT_SSLCERT, o->cert_file);
  if (o->key_pem && !rc)
    rc = set_blob(e, CURLOPT_SSLKEY_BLOB, o->key_pem);
  else if (o->key_file)
    SET(CURLOPT_SSLKEY, o->key_file);
  if (o->cert_pem || o->cert_file)
    SET(CURLOPT_SSLCERTTYPE, "PEM");
  if (o->key_pem || o->key_file)
    SET(CURLOPT_SSLKEYTYPE, "PEM");

  if (strcmp(m, "GET") == 0 && !o->body && !o->read_cb) {
    SET(CURLOPT_HTTPGET, 1L);
  } else if (strcmp(m, "HEAD") == 0) {
    SET(CURLOPT_NOBODY, 1L);
  } else if (o->read_cb) {
    SET(CURLOPT_UPLOAD, 1L);
    SET(CURLOPT_READFUNCTION, on_read);
    SET(CURLOPT_READDATA, r);
    SET(CURLOPT_INFILESIZE_LARGE, (curl_off_t)o->read_len);
    SET(CURLOPT_CUSTOMREQUEST, m);
  } else if (o->body) {
    SET(CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)o->body_len);
    SET(CURLOPT_COPYPOSTFIELDS, (const char *)o->body);
    if (strcmp(m, "POST") != 0)
      SET(CURLOPT_CUSTOMREQUEST, m);
  } else {
    SET(CURLOPT_CUSTOMREQUEST, m);
  }
  if (r->hdrs)
    SET(CURLOPT_HTTPHEADER, r->hdrs);
#undef SET
  return rc;
}

int thaw_http_start(thaw_http_t *h, const thaw_http_opts_t *o,
                    thaw_http_req_t **out) {
  if (!h || h->freeing || !o || !o->url || !o->on_done)
    return THAW_EINVAL;
  if (o->body && o->read_cb)
    return THAW_EINVAL;
  if (strncasecmp(o->url, "http://", 7) != 0 &&
      strncasecmp(o->url, "https://", 8) != 0)
    return THAW_EINVAL;
  thaw_http_req_t *r = calloc(1, sizeof *r);
  if (!r)
    return THAW_ENOMEM;
  int rc = THAW_ENOMEM;
  r->h = h;
  r->on_response = o->on_response;
  r->on_data = o->on_data;
  r->read_cb = o->read_cb;
  r->on_done = o->on_done;
  r->data = o->data;
  r->max_body = o->max_body ? o->max_body
                            : (o->on_data ? 0 : DEFAULT_MAX_BUFFERED);
  r->easy = curl_easy_init();
  if (!r->easy)
    goto fail;
  int has_expect = 0;
  for (const char *const *hp = o->headers; hp && *hp; hp++) {
    if (strncasecmp(*hp, "Expect:", 7) == 0)
      has_expect = 1;
    struct curl_slist *n = curl_slist_append(r->hdrs, *hp);
    if (!n)
      goto fail;
    r->hdrs = n;
  }
  if (!has_expect && (o->body || o->read_cb)) {
    /* no 100-continue round trip: our servers answer straight away */
    struct curl_slist *n = curl_slist_append(r->hdrs, "Expect:");
    if (!n)
      goto fail;
    r->hdrs = n;
  }
  rc = configure(r, o);
  if (rc)
    goto fail;
  if (h->depth > 0)
    r->unattached = 1;
  else if (curl_multi_add_handle(h->multi, r->easy) != CURLM_OK) {
    rc = THAW_ENOMEM;
    goto fail;
  }
  r->next = h->reqs;
  if (h->reqs)
    h->reqs->prev = r;
  h->reqs = r;
  if (out)
    *out = r;
  return 0;
fail:
  if (r->easy)
    curl_easy_cleanup(r->easy);
  curl_slist_free_all(r->hdrs);
  free(r);
  return rc;
}
