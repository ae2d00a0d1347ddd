/* server.c - h2o listeners for /mutate (TLS) and /metrics /healthz /readyz. */
#include "server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <h2o.h>
#include <malloc.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "error.h"
#include "log.h"

#define BACKLOG 128
#define DRAIN_TICK_MS 100
#define GOAWAY_GRACE_MS 10000 /* HTTP/2: after the final GOAWAY, then close */
#define SWEEP_MS 1000         /* the stall watchdog's period */
#define CUT_GRACE_MS 5000     /* after a cut at the drain deadline, give up */

typedef struct thaw_server thaw_server_t;
typedef struct conn conn_t;

/* One h2o configuration, context and TCP listener. */
typedef struct {
  thaw_server_t *srv;
  const char *what; /* "webhook" or "metrics", for logs */
  struct sockaddr_storage addr;
  h2o_globalconf_t conf;
  h2o_accept_ctx_t accept;
  h2o_context_t ctx;
  uv_tcp_t tcp;
  int ctx_live; /* h2o_context_init done, not yet disposed */
  int tcp_open; /* tcp initialised and not closed */
  size_t conns; /* accepted sockets not yet closed */
  conn_t *head; /* ... in a list, for the watchdog */
  char bound[INET6_ADDRSTRLEN + 8];
} listener_t;

/* An accepted connection; the uv handle comes first so close callbacks can
 * cast back. h2o owns the handle's data field; `sock` stays valid until the
 * handle's close callback, which unlinks the connection. sock->on_close.data
 * points back here (h2o leaves that hook to the acceptor), so a request finds
 * its connection in O(1). */
struct conn {
  uv_tcp_t tcp;
  listener_t *l;
  h2o_socket_t *sock;
  conn_t *prev, *next;
  size_t seen_read; /* sock->bytes_read when last looked at */
  uint64_t
      pending_since; /* request bytes arrived, none handled since; 0: idle */
  int cut;           /* shut down by us */
  SSL_CTX *ssl_ctx;  /* our reference to the context it was accepted with */
};

typedef struct {
  h2o_handler_t super;
  thaw_server_t *srv;
} handler_t;

/* The statuses /mutate answers; their counter children are looked up once. */
static const int codes[] = {200, 400, 405, 413, 415, 500};
#define NCODES (sizeof codes / sizeof codes[0])

struct thaw_server {
  uv_loop_t *loop;
  thaw_server_opts_t o;
  listener_t tls, plain;
  thaw_metric_t *requests, *duration;
  /* Made on first use, as thaw_metric_inc would, so /metrics is unchanged. */
  thaw_metric_child_t *by_code[NCODES], *duration_child;
  int stopping;
  int trim_due; /* a connection closed since the last sweep */
  uv_timer_t drain, sweep;
  int drain_open, sweep_open;
  uint64_t stop_at, cut_at;
  thaw_server_stopped_cb stopped_cb;
  void *stopped_data;
};

/* --- addresses ------------------------------------------------------- */

static int ipv6_available(void) {
  int fd = socket(AF_INET6, SOCK_STREAM, 0);
  if (fd < 0)
    return 0;
  close(fd);
  return 1;
}

int thaw_server_parse_address(const char *s, struct sockaddr_storage *out,
                              char *err, size_t errlen) {
  char host[64];
  const char *colon, *port;
  memset(out, 0, sizeof *out);
  if (s == NULL || *s == '\0')
    return thaw_errf(err, errlen, THAW_ECONFIG, "empty address");
  if (s[0] == '[') {
    const char *close = strchr(s, ']');
    if (close == NULL || close[1] != ':')
      return thaw_errf(err, errlen, THAW_ECONFIG, "%s: want [IPV6]:PORT", s);
    colon = close + 1;
    if ((size_t)(close - s - 1) >= sizeof host)
      return thaw_errf(err, errlen, THAW_ECONFIG, "%s: host too long", s);
    snprintf(host, sizeof host, "%.*s", (int)(close - s - 1), s + 1);
  } else {
    colon = strrchr(s, ':');
    if (colon == NULL)
      return thaw_errf(err, errlen, THAW_ECONFIG, "%s: want HOST:PORT or :PORT",
                       s);
    if ((size_t)(colon - s) >= sizeof host)
      return thaw_errf(err, errlen, THAW_ECONFIG, "%s: host too long", s);
    snprintf(host, sizeof host, "%.*s", (int)(colon - s), s);
  }
  port = colon + 1;
  char *end;
  errno = 0;
  long p = strtol(port, &end, 10);
  if (*port < '0' || *port > '9' || *end != '\0' || errno || p < 0 || p > 65535)
    return thaw_errf(err, errlen, THAW_ECONFIG, "%s: bad port", s);

  if (host[0] == '\0') {
    /* Every address: dual-stack "::" when the kernel has IPv6. */
    if (ipv6_available())
      uv_ip6_addr("::", (int)p, (struct sockaddr_in6 *)out);
    else
      uv_ip4_addr("0.0.0.0", (int)p, (struct sockaddr_in *)out);
    return 0;
  }
  if (strcmp(host, "localhost") == 0)
    snprintf(host, sizeof host, "127.0.0.1");
  if (uv_ip4_addr(host, (int)p, (struct sockaddr_in *)out) == 0)
    return 0;
  if (uv_ip6_addr(host, (int)p, (struct sockaddr_in6 *)out) == 0 &&
      strchr(host, ':') != NULL)
    return 0;
  return thaw_errf(err, errlen, THAW_ECONFIG,
                   "%s: host must be an IP address or localhost", s);
}

static void format_addr(const struct sockaddr_storage *ss, char *buf,
                        size_t len) {
  char ip[INET6_ADDRSTRLEN] = "?";
  int port = 0;
  if (ss->ss_family == AF_INET6) {
    const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)ss;
    uv_ip6_name(a, ip, sizeof ip);
    port = ntohs(a->sin6_port);
    snprintf(buf, len, "[%s]:%d", ip, port);
  } else {
    const struct sockaddr_in *a = (const struct sockaddr_in *)ss;
    uv_ip4_name(a, ip, sizeof ip);
    port = ntohs(a->sin_port);
    snprintf(buf, len, "%s:%d", ip, port);
  }
}

/* --- responses ------------------------------------------------------- */

static void respond(h2o_req_t *req, int status, const char *reason,
                    const char *type, const char *body, size_t len) {
  req->res.status = status;
  req->res.reason = reason;
  req->res.content_length = len;
  h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE, NULL,
                 type, strlen(type));
  h2o_send_inline(req, body, len);
}

static void respond_text(h2o_req_t *req, int status, const char *reason,
                         const char *text) {
  respond(req, status, reason, "text/plain; charset=utf-8", text, strlen(text));
}

static int path_is(const h2o_req_t *req, const char *path) {
  return h2o_memis(req->path_normalized.base, req->path_normalized.len, path,
                   strlen(path));
}

static int method_is(const h2o_req_t *req, const char *m) {
  return h2o_memis(req->method.base, req->method.len, m, strlen(m));
}

static void method_not_allowed(h2o_req_t *req, const char *allow) {
  h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_ALLOW, NULL, allow,
                 strlen(allow));
  respond_text(req, 405, "Method Not Allowed", "method not allowed\n");
}

/* application/json, any case, optionally followed by ";parameters". */
static int is_json(const h2o_req_t *req) {
  static const char want[] = "application/json";
  const size_t n = sizeof want - 1;
  ssize_t i = h2o_find_header(&req->headers, H2O_TOKEN_CONTENT_TYPE, -1);
  if (i < 0)
    return 0;
  h2o_iovec_t v = req->headers.entries[i].value;
  const char *p = v.base, *e = v.base + v.len;
  while (p < e && (*p == ' ' || *p == '\t'))
    p++;
  if ((size_t)(e - p) < n || strncasecmp(p, want, n) != 0)
    return 0;
  p += n;
  while (p < e && (*p == ' ' || *p == '\t'))
    p++;
  return p == e || *p == ';';
}

/* --- the stall watchdog ---------------------------------------------- */

/* h2o 2.2.5 bounds handshakes, idle connections and a whole HTTP/1.1
 * request (http1.req_timeout), and closes an HTTP/2 connection whose only
 * stream waits for a body that never comes (idle_timeout), but not one whose
 * body trickles in a byte at a time. So: a connection whose request bytes
 * (sock->bytes_read, which h2o counts on HTTP/2) started arriving more than
 * THAW_SERVER_TIMEOUT_MS ago without a request reaching a handler since is
 * shut down (shutdown(2): h2o sees EOF and frees it through its own paths). */

static void cut(conn_t *c) {
  uv_os_fd_t fd;
  if (c->cut || uv_is_closing((uv_handle_t *)&c->tcp) ||
      uv_fileno((uv_handle_t *)&c->tcp, &fd) != 0)
    return;
  c->cut = 1;
  shutdown(fd, SHUT_RDWR);
}

/* A request on req's connection reached its handler: its clock restarts. */
static void handled(h2o_req_t *req) {
  if (req->conn->callbacks->get_socket == NULL)
    return;
  h2o_socket_t *sock = req->conn->callbacks->get_socket(req->conn);
  conn_t *c = sock != NULL ? sock->on_close.data : NULL;
  if (c == NULL || c->sock != sock)
    return;
  c->seen_read = sock->bytes_read;
  c->pending_since = 0;
}

static void on_sweep(uv_timer_t *t) {
  thaw_server_t *s = t->data;
  uint64_t now = uv_now(s->loop);
  /* A burst of connections leaves ~60 KB each of freed TLS and h2o buffers
   * that glibc keeps; hand them back, at most once a second. */
  if (s->trim_due) {
    s->trim_due = 0;
    malloc_trim(0);
  }
  listener_t *ls[] = {&s->tls, &s->plain};
  for (int i = 0; i < 2; i++)
    for (conn_t *c = ls[i]->head; c != NULL; c = c->next) {
      if (c->sock->bytes_read != c->seen_read) {
        c->seen_read = c->sock->bytes_read;
        if (c->pending_since == 0)
          c->pending_since = now;
      }
      if (c->pending_since != 0 &&
          now - c->pending_since >= THAW_SERVER_TIMEOUT_MS && !c->cut) {
        thaw_info("request timed out; closing the connection", "listener",
                  ls[i]->what);
        cut(c);
      }
    }
}

/* --- /mutate --------------------------------------------------------- */

static thaw_metric_child_t *code_child(thaw_server_t *s, int status) {
  char code[8];
  snprintf(code, sizeof code, "%d", status);
  const char *v[] = {code};
  return thaw_metric_child(s->requests, v);
}

static void count(thaw_server_t *s, int status, uint64_t t0) {
  thaw_metric_child_t *c = NULL;
  for (size_t i = 0; i < NCODES; i++)
    if (codes[i] == status) {
      if (s->by_code[i] == NULL)
        s->by_code[i] = code_child(s, status);
      c = s->by_code[i];
      break;
    }
  thaw_metric_child_add(c != NULL ? c : code_child(s, status), 1);
  if (s->duration_child == NULL)
    s->duration_child = thaw_metric_child(s->duration, NULL);
  thaw_metric_child_observe(s->duration_child,
                            (double)(uv_hrtime() - t0) / 1e9);
}

/* Decides and answers; returns the status sent. */
static int mutate(thaw_server_t *s, h2o_req_t *req) {
  if (!method_is(req, "POST")) {
    method_not_allowed(req, "POST");
    return 405;
  }
  if (!is_json(req)) {
    respond_text(req, 415, "Unsupported Media Type",
                 "content-type must be application/json\n");
    return 415;
  }
  if (req->entity.len > THAW_SERVER_MAX_BODY) {
    respond_text(req, 413, "Payload Too Large", "request body over 3 MiB\n");
    return 413;
  }
  if (req->entity.base == NULL || req->entity.len == 0) {
    respond_text(req, 400, "Bad Request", "empty body\n");
    return 400;
  }
  char err[256] = "", *out = NULL;
  size_t out_len = 0;
  int rc = s->o.review(req->entity.base, req->entity.len, &out, &out_len, err,
                       sizeof err, s->o.data);
  if (rc == 0) {
    /* Copied into the request's pool: measured cheaper than handing h2o the
     * malloc'd reply (its deferred free costs a refcounted chunk: +300
     * instructions per request against a 505-byte copy). */
    respond(req, 200, "OK", "application/json", out, out_len);
    free(out);
    return 200;
  }
  free(out);
  if (rc == THAW_EPARSE) {
    char line[300];
    snprintf(line, sizeof line, "%s\n", err[0] ? err : "malformed review");
    respond_text(req, 400, "Bad Request", line);
    return 400;
  }
  thaw_warn("admission failed", "error", thaw_strerror(rc));
  respond_text(req, 500, "Internal Server Error", "internal error\n");
  return 500;
}

static int on_mutate(h2o_handler_t *self, h2o_req_t *req) {
  thaw_server_t *s = ((handler_t *)self)->srv;
  handled(req);
  if (!path_is(req, "/mutate")) {
    respond_text(req, 404, "Not Found", "not found\n");
    return 0;
  }
  uint64_t t0 = uv_hrtime();
  count(s, mutate(s, req), t0);
  return 0;
}

/* --- /metrics /healthz /readyz --------------------------------------- */

static int on_ops(h2o_handler_t *self, h2o_req_t *req) {
  thaw_server_t *s = ((handler_t *)self)->srv;
  handled(req);
  int known = path_is(req, "/metrics") || path_is(req, "/healthz") ||
              path_is(req, "/readyz");
  if (!known) {
    respond_text(req, 404, "Not Found", "not found\n");
    return 0;
  }
  if (!method_is(req, "GET") && !method_is(req, "HEAD")) {
    method_not_allowed(req, "GET, HEAD");
    return 0;
  }
  if (path_is(req, "/healthz")) {
    respond_text(req, 200, "OK", "ok\n");
  } else if (path_is(req, "/readyz")) {
    if (s->o.ready == NULL || s->o.ready(s->o.data))
      respond_text(req, 200, "OK", "ok\n");
    else
      respond_text(req, 503, "Service Unavailable", "not synced\n");
  } else {
    char *text = NULL;
    size_t len = 0;
    if (thaw_metrics_render(s->o.metrics, &text, &len) != 0) {
      respond_text(req, 500, "Internal Server Error", "out of memory\n");
      return 0;
    }
    respond(req, 200, "OK", "text/plain; version=0.0.4; charset=utf-8", text,
            len);
    free(text);
  }
  return 0;
}

/* --- setup ----------------------------------------------------------- */

static int setup_listener(thaw_server_t *s, listener_t *l, const char *what,
                          const char *address,
                          int (*on_req)(h2o_handler_t *, h2o_req_t *),
                          char *err, size_t errlen) {
  l->srv = s;
  l->what = what;
  int rc = thaw_server_parse_address(address, &l->addr, err, errlen);
  if (rc != 0)
    return rc;
  h2o_config_init(&l->conf);
  l->conf.max_request_entity_size = THAW_SERVER_H2O_MAX_ENTITY;
  l->conf.handshake_timeout = THAW_SERVER_TIMEOUT_MS;
  l->conf.http1.req_timeout = THAW_SERVER_TIMEOUT_MS;
  l->conf.http1.upgrade_to_http2 = 0; /* no h2c on either listener */
  l->conf.http2.idle_timeout = THAW_SERVER_TIMEOUT_MS;
  l->conf.http2.graceful_shutdown_timeout = GOAWAY_GRACE_MS;
  /* The default host answers whatever Host/:authority the client sends. */
  h2o_hostconf_t *host = h2o_config_register_host(
      &l->conf, h2o_iovec_init(H2O_STRLIT("default")), 65535);
  h2o_pathconf_t *path = h2o_config_register_path(host, "/", 0);
  handler_t *h = (handler_t *)h2o_create_handler(path, sizeof *h);
  h->super.on_req = on_req;
  h->srv = s;
  return 0;
}

int thaw_server_new(uv_loop_t *loop, const thaw_server_opts_t *o,
                    thaw_server_t **out, char *err, size_t errlen) {
  *out = NULL;
  if (o->tls == NULL || o->metrics == NULL || o->review == NULL)
    return thaw_errf(err, errlen, THAW_EINVAL, "server: missing option");
  thaw_server_t *s = calloc(1, sizeof *s);
  if (s == NULL)
    return THAW_ENOMEM;
  s->loop = loop;
  s->o = *o;
  int rc = setup_listener(s, &s->tls, "webhook", o->bind_address, on_mutate,
                          err, errlen);
  if (rc != 0) {
    free(s);
    return rc;
  }
  rc = setup_listener(s, &s->plain, "metrics", o->metrics_bind_address, on_ops,
                      err, errlen);
  if (rc != 0) {
    h2o_config_dispose(&s->tls.conf);
    free(s);
    return rc;
  }
  static const char *const code[] = {"code"};
  s->requests =
      thaw_metrics_counter(o->metrics, "thaw_webhook_requests_total",
                           "Answers on /mutate by HTTP status.", 1, code);
  s->duration = thaw_metrics_histogram(
      o->metrics, "thaw_webhook_admission_duration_seconds",
      "Time to decide and answer one /mutate request.", 0, NULL,
      thaw_metrics_latency_buckets, thaw_metrics_latency_nbuckets);
  *out = s;
  return 0;
}

static void on_conn_closed(uv_handle_t *h) {
  conn_t *c = (conn_t *)h;
  listener_t *l = c->l;
  if (c->prev != NULL)
    c->prev->next = c->next;
  else
    l->head = c->next;
  if (c->next != NULL)
    c->next->prev = c->prev;
  l->conns--;
  l->srv->trim_due = 1;
  SSL_CTX_free(c->ssl_ctx);
  free(c);
}

static void on_refused_closed(uv_handle_t *h) { free(h); }

static void on_connection(uv_stream_t *ls, int status) {
  listener_t *l = ls->data;
  if (status != 0) {
    thaw_warn("accept failed", "listener", l->what, "error",
              uv_strerror(status));
    return;
  }
  conn_t *c = calloc(1, sizeof *c);
  if (c == NULL)
    return; /* the connection waits in the backlog */
  c->l = l;
  uv_tcp_init(ls->loop, &c->tcp);
  if (uv_accept(ls, (uv_stream_t *)&c->tcp) != 0) {
    uv_close((uv_handle_t *)&c->tcp, on_refused_closed);
    return;
  }
  uv_tcp_nodelay(&c->tcp, 1);
  c->sock = h2o_uv_socket_create((uv_stream_t *)&c->tcp, on_conn_closed);
  c->sock->on_close.data = c; /* no on_close.cb: the uv close unlinks */
  c->next = l->head;
  if (l->head != NULL)
    l->head->prev = c;
  l->head = c;
  l->conns++;
  if (l == &l->srv->tls) {
    /* h2o keeps the bare pointer and calls SSL_new only when the
     * ClientHello arrives, which may be after a reload has dropped the
     * context: hold a reference for the connection's life. */
    SSL_CTX *ctx = thaw_tls_ctx(l->srv->o.tls); /* the newest cert */
    SSL_CTX_up_ref(ctx);
    c->ssl_ctx = ctx;
    l->accept.ssl_ctx = ctx;
  }
  h2o_accept(&l->accept, c->sock);
}

static int listen_on(thaw_server_t *s, listener_t *l, char *err,
                     size_t errlen) {
  h2o_context_init(&l->ctx, s->loop, &l->conf);
  l->ctx_live = 1;
  l->accept.ctx = &l->ctx;
  l->accept.hosts = l->conf.hosts;
  uv_tcp_init(s->loop, &l->tcp);
  l->tcp.data = l;
  l->tcp_open = 1;
  char want[INET6_ADDRSTRLEN + 8];
  format_addr(&l->addr, want, sizeof want);
  int rc = uv_tcp_bind(&l->tcp, (const struct sockaddr *)&l->addr, 0);
  if (rc == 0)
    rc = uv_listen((uv_stream_t *)&l->tcp, BACKLOG, on_connection);
  if (rc != 0)
    return thaw_errf(err, errlen, rc, "listen on %s (%s): %s", want, l->what,
                     uv_strerror(rc));
  struct sockaddr_storage got;
  int len = sizeof got;
  if (uv_tcp_getsockname(&l->tcp, (struct sockaddr *)&got, &len) == 0)
    format_addr(&got, l->bound, sizeof l->bound);
  else
    snprintf(l->bound, sizeof l->bound, "%s", want);
  thaw_info("listening", "listener", l->what, "addr", l->bound, "tls",
            l == &s->tls ? "true" : "false");
  return 0;
}

int thaw_server_start(thaw_server_t *s, char *err, size_t errlen) {
  uv_timer_init(s->loop, &s->sweep);
  s->sweep.data = s;
  s->sweep_open = 1;
  uv_timer_start(&s->sweep, on_sweep, SWEEP_MS, SWEEP_MS);
  int rc = listen_on(s, &s->plain, err, errlen);
  if (rc == 0)
    rc = listen_on(s, &s->tls, err, errlen);
  return rc;
}

/* --- graceful stop --------------------------------------------------- */

static void on_listener_closed(uv_handle_t *h) {
  listener_t *l = h->data;
  l->tcp_open = 0;
}

static void on_drain_closed(uv_handle_t *h) {
  thaw_server_t *s = h->data;
  s->drain_open = 0;
}

static void on_sweep_closed(uv_handle_t *h) {
  thaw_server_t *s = h->data;
  s->sweep_open = 0;
}

static void on_drain_tick(uv_timer_t *t) {
  thaw_server_t *s = t->data;
  uint64_t now = uv_now(s->loop);
  int busy =
      s->tls.conns + s->plain.conns > 0 || s->tls.tcp_open || s->plain.tcp_open;
  if (busy && now - s->stop_at >= THAW_SERVER_DRAIN_MS && s->cut_at == 0) {
    char n[24];
    snprintf(n, sizeof n, "%zu", s->tls.conns + s->plain.conns);
    thaw_warn("drain deadline passed; closing connections", "conns", n);
    s->cut_at = now;
    listener_t *ls[] = {&s->tls, &s->plain};
    for (int i = 0; i < 2; i++)
      for (conn_t *c = ls[i]->head; c != NULL; c = c->next)
        cut(c);
  }
  int late = s->cut_at != 0 && now - s->cut_at >= CUT_GRACE_MS;
  if (busy && !late)
    return;
  uv_close((uv_handle_t *)&s->drain, on_drain_closed);
  if (s->sweep_open)
    uv_close((uv_handle_t *)&s->sweep, on_sweep_closed);
  if (busy) {
    thaw_warn("connections did not close; leaving them");
  } else {
    /* No connection left: the contexts' timers can go. */
    listener_t *ls[] = {&s->tls, &s->plain};
    for (int i = 0; i < 2; i++) {
      /* h2o re-sends GOAWAY a second after the shutdown request; with no
       * connection left that timer has nothing to do, and dispose asserts
       * that no timer entry is still linked. */
      h2o_timeout_entry_t *goaway =
          &ls[i]->ctx.http2._graceful_shutdown_timeout;
      if (ls[i]->ctx_live && h2o_timeout_is_linked(goaway))
        h2o_timeout_unlink(goaway);
      if (ls[i]->ctx_live)
        h2o_context_dispose(&ls[i]->ctx);
      ls[i]->ctx_live = 0;
    }
  }
  if (s->stopped_cb != NULL)
    s->stopped_cb(!busy, s->stopped_data);
}

void thaw_server_stop(thaw_server_t *s, thaw_server_stopped_cb cb, void *data) {
  if (s->stopping)
    return;
  s->stopping = 1;
  s->stopped_cb = cb;
  s->stopped_data = data;
  s->stop_at = uv_now(s->loop);
  listener_t *ls[] = {&s->tls, &s->plain};
  for (int i = 0; i < 2; i++) {
    if (ls[i]->tcp_open)
      uv_close((uv_handle_t *)&ls[i]->tcp, on_listener_closed);
    if (ls[i]->ctx_live)
      h2o_context_request_shutdown(&ls[i]->ctx);
  }
  char n[24];
  snprintf(n, sizeof n, "%zu", s->tls.conns + s->plain.conns);
  thaw_info("stopping: draining connections", "conns", n);
  uv_timer_init(s->loop, &s->drain);
  s->drain.data = s;
  s->drain_open = 1;
  uv_timer_start(&s->drain, on_drain_tick, 0, DRAIN_TICK_MS);
}

void thaw_server_free(thaw_server_t *s) {
  if (s == NULL)
    return;
  h2o_config_dispose(&s->tls.conf);
  h2o_config_dispose(&s->plain.conf);
  free(s);
}
