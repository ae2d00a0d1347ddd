/* forward.c - loopback TCP forwards to in-cluster Services (forward.h). */
#include "forward.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "log.h"

#define READ_BUF (64 << 10)

typedef struct conn conn_t;

typedef struct {
  uv_tcp_t tcp;
  conn_t *c;
  size_t queued; /* bytes being written to this side */
  int eof;       /* this side ended its stream */
  int paused;    /* not read: the other side's queue is full */
} side_t;

struct conn {
  thaw_forward_t *f;
  const thaw_forward_route_t *r;
  side_t side[2]; /* 0: the client, 1: the target */
  uv_getaddrinfo_t gai;
  uv_connect_t creq;
  uv_timer_t timer;
  int handles; /* open handles */
  int resolving, connected, closing;
  conn_t *prev, *next;
};

typedef struct {
  uv_write_t req;
  conn_t *c;
  int to; /* side written to */
  uv_buf_t buf;
} wreq_t;

typedef struct {
  uv_tcp_t tcp;
  thaw_forward_t *f;
  size_t i;
} listener_t;

struct thaw_forward {
  uv_loop_t *loop;
  thaw_forward_opts_t o;
  thaw_forward_route_t routes[THAW_FORWARD_ROUTES_MAX];
  listener_t lis[THAW_FORWARD_ROUTES_MAX];
  size_t n, listeners_open;
  conn_t *conns;
  thaw_forward_stats_t st;
  int freeing;
};

static void maybe_free(thaw_forward_t *f) {
  if (f->freeing && f->listeners_open == 0 && f->conns == NULL)
    free(f);
}

/* --- one connection ---------------------------------------------------- */

static void conn_release(conn_t *c) {
  if (c->handles > 0 || c->resolving)
    return;
  thaw_forward_t *f = c->f;
  if (c->prev)
    c->prev->next = c->next;
  else
    f->conns = c->next;
  if (c->next)
    c->next->prev = c->prev;
  f->st.open--;
  free(c);
  maybe_free(f);
}

static void on_timer_closed(uv_handle_t *h) {
  conn_t *c = h->data;
  c->handles--;
  conn_release(c);
}

static void on_tcp_closed(uv_handle_t *h) {
  side_t *s = h->data;
  s->c->handles--;
  conn_release(s->c);
}

/* Closes both sides (a write still queued is cancelled first). */
static void conn_close(conn_t *c) {
  if (c->closing)
    return;
  c->closing = 1;
  if (c->resolving)
    uv_cancel((uv_req_t *)&c->gai);
  uv_close((uv_handle_t *)&c->timer, on_timer_closed);
  uv_close((uv_handle_t *)&c->side[0].tcp, on_tcp_closed);
  uv_close((uv_handle_t *)&c->side[1].tcp, on_tcp_closed);
}

/* Both streams ended and everything was written: done. */
static void maybe_done(conn_t *c) {
  if (c->side[0].eof && c->side[1].eof && c->side[0].queued == 0 &&
      c->side[1].queued == 0)
    conn_close(c);
}

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf) {
  (void)h;
  (void)hint;
  buf->base = malloc(READ_BUF);
  buf->len = buf->base ? READ_BUF : 0;
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);

static void start_reading(conn_t *c, int i) {
  side_t *s = &c->side[i];
  if (!c->closing && !s->eof &&
      uv_read_start((uv_stream_t *)&s->tcp, on_alloc, on_read) != 0)
    conn_close(c);
}

static void on_written(uv_write_t *req, int status) {
  wreq_t *w = (wreq_t *)req;
  conn_t *c = w->c;
  int ti = w->to;
  side_t *to = &c->side[ti], *from = &c->side[1 - ti];
  to->queued -= READ_BUF; /* the buffer's size, not the bytes in it */
  free(w->buf.base);
  free(w);
  if (c->closing)
    return;
  if (status < 0) {
    conn_close(c);
    return;
  }
  if (from->paused && to->queued < THAW_FORWARD_QUEUE_MAX / 4) {
    from->paused = 0;
    start_reading(c, 1 - ti);
  }
  maybe_done(c);
}

static void on_shutdown(uv_shutdown_t *req, int status) {
  conn_t *c = req->data;
  free(req);
  if (c->closing)
    return;
  if (status < 0)
    conn_close(c);
  else
    maybe_done(c);
}

static void on_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf) {
  side_t *from = stream->data;
  conn_t *c = from->c;
  int i = from == &c->side[0] ? 0 : 1;
  side_t *to = &c->side[1 - i];
  if (nread <= 0 || c->closing) {
    free(buf->base);
    if (nread == 0 || c->closing)
      return;
    if (nread != UV_EOF) {
      conn_close(c);
      return;
    }
    /* an end of stream: pass it on once what is queued is written */
    from->eof = 1;
    uv_read_stop(stream);
    uv_shutdown_t *sd = malloc(sizeof *sd);
    if (sd == NULL) {
      conn_close(c);
      return;
    }
    sd->data = c;
    if (uv_shutdown(sd, (uv_stream_t *)&to->tcp, on_shutdown) != 0) {
      free(sd);
      conn_close(c);
    }
    return;
  }
  wreq_t *w = malloc(sizeof *w);
  if (w == NULL) {
    free(buf->base);
    conn_close(c);
    return;
  }
  w->c = c;
  w->to = 1 - i;
  w->buf = uv_buf_init(buf->base, (unsigned)nread);
  if (uv_write(&w->req, (uv_stream_t *)&to->tcp, &w->buf, 1, on_written) !=
      0) {
    free(buf->base);
    free(w);
    conn_close(c);
    return;
  }
  /* count whole buffers: many small reads hold a 64 KiB buffer each */
  to->queued += READ_BUF;
  if (to->queued > THAW_FORWARD_QUEUE_MAX) { /* back-pressure */
    from->paused = 1;
    uv_read_stop(stream);
  }
}

static void on_connected(uv_connect_t *req, int status) {
  conn_t *c = req->data;
  if (c->closing)
    return;
  if (status < 0) {
    c->f->st.failed++;
    thaw_warn("forward: target unreachable", "target", c->r->host,
              "error", uv_strerror(status));
    conn_close(c);
    return;
  }
  c->connected = 1;
  uv_timer_stop(&c->timer);
  uv_tcp_nodelay(&c->side[1].tcp, 1);
  start_reading(c, 0);
  start_reading(c, 1);
}

static void on_resolved(uv_getaddrinfo_t *req, int status,
                        struct addrinfo *res) {
  conn_t *c = req->data;
  c->resolving = 0;
  if (c->closing || status < 0) {
    if (!c->closing) {
      c->f->st.failed++;
      thaw_warn("forward: target not resolved", "target", c->r->host,
                "error", uv_strerror(status));
      conn_close(c);
    }
    uv_freeaddrinfo(res);
    conn_release(c); /* when closed meanwhile, it waited for this */
    return;
  }
  c->creq.data = c;
  int rc = uv_tcp_connect(&c->creq, &c->side[1].tcp, res->ai_addr,
                          on_connected);
  uv_freeaddrinfo(res);
  if (rc != 0) {
    c->f->st.failed++;
    conn_close(c);
  }
}

static void on_timeout(uv_timer_t *t) {
  conn_t *c = t->data;
  c->f->st.failed++;
  thaw_warn("forward: target did not answer in time", "target", c->r->host);
  conn_close(c);
}

static void on_accept_closed(uv_handle_t *h) { free(h); }

static void on_connection(uv_stream_t *server, int status) {
  listener_t *l = server->data;
  thaw_forward_t *f = l->f;
  if (status < 0 || f->freeing)
    return;
  if (f->st.open >= f->o.max_connections) { /* accept and close at once */
    uv_tcp_t *t = malloc(sizeof *t);
    if (t == NULL || uv_tcp_init(f->loop, t) != 0) {
      free(t);
      return;
    }
    if (uv_accept(server, (uv_stream_t *)t) == 0)
      f->st.refused++;
    uv_close((uv_handle_t *)t, on_accept_closed);
    return;
  }
  conn_t *c = calloc(1, sizeof *c);
  if (c == NULL)
    return;
  c->f = f;
  c->r = &f->routes[l->i];
  for (int i = 0; i < 2; i++) {
    uv_tcp_init(f->loop, &c->side[i].tcp);
    c->side[i].tcp.data = &c->side[i];
    c->side[i].c = c;
  }
  uv_timer_init(f->loop, &c->timer);
  c->timer.data = c;
  c->handles = 3;
  c->next = f->conns;
  if (f->conns)
    f->conns->prev = c;
  f->conns = c;
  f->st.open++;
  if (uv_accept(server, (uv_stream_t *)&c->side[0].tcp) != 0) {
    conn_close(c);
    return;
  }
  f->st.accepted++;
  struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
  c->gai.data = c;
  c->resolving = 1;
  uv_timer_start(&c->timer, on_timeout, f->o.connect_timeout_ms, 0);
  if (uv_getaddrinfo(f->loop, &c->gai, on_resolved, c->r->host, c->r->port,
                     &hints) != 0) {
    c->resolving = 0;
    f->st.failed++;
    conn_close(c);
  }
}

/* --- routes and listeners ---------------------------------------------- */

/* "IP:PORT" or "[IPv6]:PORT" into host and port (brackets dropped). */
static int split_hostport(const char *s, size_t n, char *host, size_t hcap,
                          char *port, size_t pcap) {
  const char *colon;
  const char *h = s;
  size_t hn;
  if (n > 0 && s[0] == '[') {
    const char *close = memchr(s, ']', n);
    if (close == NULL || close + 1 >= s + n || close[1] != ':')
      return THAW_EINVAL;
    h = s + 1;
    hn = (size_t)(close - h);
    colon = close + 1;
  } else {
    colon = NULL;
    for (const char *p = s; p < s + n; p++)
      if (*p == ':')
        colon = p;
    if (colon == NULL || memchr(s, ':', (size_t)(colon - s)) != NULL)
      return THAW_EINVAL; /* an IPv6 address needs brackets */
    hn = (size_t)(colon - s);
  }
  size_t pn = (size_t)(s + n - colon - 1);
  if (hn == 0 || hn >= hcap || pn == 0 || pn >= pcap ||
      strspn(colon + 1, "0123456789") < pn)
    return THAW_EINVAL;
  long v = strtol(colon + 1, NULL, 10);
  if (v < 0 || v > 65535)
    return THAW_EINVAL;
  memcpy(host, h, hn);
  host[hn] = '\0';
  memcpy(port, colon + 1, pn);
  port[pn] = '\0';
  for (size_t i = 0; i < hn; i++) /* a DNS name or an address literal */
    if (!strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                "0123456789.-:%", host[i]))
      return THAW_EINVAL;
  return 0;
}

int thaw_forward_parse_route(const char *spec, thaw_forward_route_t *out) {
  const char *eq = spec ? strchr(spec, '=') : NULL;
  char lhost[THAW_FORWARD_HOST_MAX + 1], lport[8];
  if (eq == NULL)
    return THAW_EINVAL;
  memset(out, 0, sizeof *out);
  size_t ln = (size_t)(eq - spec);
  if (ln >= sizeof out->listen ||
      split_hostport(spec, ln, lhost, sizeof lhost, lport, sizeof lport) ||
      split_hostport(eq + 1, strlen(eq + 1), out->host, sizeof out->host,
                     out->port, sizeof out->port))
    return THAW_EINVAL;
  struct sockaddr_in6 a6;
  struct sockaddr_in a4;
  if (uv_ip4_addr(lhost, 0, &a4) != 0 && uv_ip6_addr(lhost, 0, &a6) != 0)
    return THAW_EINVAL; /* listen on an address, never a name */
  memcpy(out->listen, spec, ln);
  out->listen[ln] = '\0';
  return 0;
}

static void on_listener_closed(uv_handle_t *h) {
  listener_t *l = h->data;
  l->f->listeners_open--;
  maybe_free(l->f);
}

static int listen_on(thaw_forward_t *f, size_t i, char *err, size_t errlen) {
  char host[THAW_FORWARD_HOST_MAX + 1], port[8];
  const char *spec = f->routes[i].listen;
  split_hostport(spec, strlen(spec), host, sizeof host, port, sizeof port);
  struct sockaddr_storage ss;
  int p = (int)strtol(port, NULL, 10); /* digits, 0..65535: split checked */
  if (uv_ip4_addr(host, p, (struct sockaddr_in *)&ss) != 0 &&
      uv_ip6_addr(host, p, (struct sockaddr_in6 *)&ss) != 0)
    return thaw_errf(err, errlen, THAW_EINVAL, "bad listen address %s", spec);
  listener_t *l = &f->lis[i];
  l->f = f;
  l->i = i;
  uv_tcp_init(f->loop, &l->tcp);
  l->tcp.data = l;
  f->listeners_open++;
  int rc = uv_tcp_bind(&l->tcp, (const struct sockaddr *)&ss, 0);
  if (rc == 0)
    rc = uv_listen((uv_stream_t *)&l->tcp, 128, on_connection);
  if (rc != 0)
    return thaw_errf(err, errlen, THAW_EIO, "listen %s: %s", spec,
                     uv_strerror(rc));
  return 0;
}

int thaw_forward_start(uv_loop_t *loop, const thaw_forward_route_t *routes,
                       size_t n, const thaw_forward_opts_t *o,
                       thaw_forward_t **out, char *err, size_t errlen) {
  if (n == 0 || n > THAW_FORWARD_ROUTES_MAX)
    return thaw_errf(err, errlen, THAW_EINVAL, "1 to %d routes",
                     THAW_FORWARD_ROUTES_MAX);
  thaw_forward_t *f = calloc(1, sizeof *f);
  if (f == NULL)
    return thaw_errf(err, errlen, THAW_ENOMEM, "out of memory");
  f->loop = loop;
  f->o = *o;
  if (f->o.connect_timeout_ms == 0)
    f->o.connect_timeout_ms = 5000;
  if (f->o.max_connections == 0)
    f->o.max_connections = 512;
  memcpy(f->routes, routes, n * sizeof *routes);
  f->n = n;
  for (size_t i = 0; i < n; i++) {
    int rc = listen_on(f, i, err, errlen);
    if (rc != 0) {
      thaw_forward_free(f);
      return rc;
    }
  }
  *out = f;
  return 0;
}

int thaw_forward_port(const thaw_forward_t *f, size_t i) {
  struct sockaddr_storage ss;
  int len = sizeof ss;
  if (i >= f->n || uv_tcp_getsockname(&f->lis[i].tcp, (struct sockaddr *)&ss,
                                      &len) != 0)
    return -1;
  return ss.ss_family == AF_INET6
             ? ntohs(((struct sockaddr_in6 *)&ss)->sin6_port)
             : ntohs(((struct sockaddr_in *)&ss)->sin_port);
}

void thaw_forward_stats(const thaw_forward_t *f, thaw_forward_stats_t *out) {
  *out = f->st;
}

void thaw_forward_free(thaw_forward_t *f) {
  if (f == NULL || f->freeing)
    return;
  f->freeing = 1;
  size_t open = f->listeners_open;
  for (size_t i = 0; i < f->n && open > 0; i++, open--)
    uv_close((uv_handle_t *)&f->lis[i].tcp, on_listener_closed);
  for (conn_t *c = f->conns; c; c = c->next)
    conn_close(c);
  maybe_free(f);
}
