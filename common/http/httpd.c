/* httpd.c - the plain HTTP/1.1 server of httpd.h: each connection reads one
 * request at a time into a fixed 8 KiB buffer, answers it whole, then looks
 * at what the client pipelined behind it.
 *
 * Reading stops while a reply is being written, so a client that pipelines
 * without reading its replies holds at most one reply and 8 KiB of requests.
 * After the last reply (Connection: close, HTTP/1.0, an error) the server
 * sends FIN and drains input for a moment before closing, so unread request
 * bytes do not turn the close into a reset that would destroy the reply.
 * A peer gone mid-write is an error code only if the process ignores
 * SIGPIPE, as both daemons' main() do. */
#include "httpd.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "error.h"
#include "httpd_internal.h"

#define MAX_CONNS 256
#define REQUEST_TIMEOUT_MS 10000  /* a whole request: from accept, or from
                                     the first byte after a keep-alive wait */
#define IDLE_TIMEOUT_MS 30000     /* keep-alive with nothing sent */
#define WRITE_TIMEOUT_MS 30000    /* a reply the client does not take */
#define LINGER_MS 2000            /* draining input after the last reply */
#define BACKLOG 128

enum conn_state { C_READING, C_WRITING, C_LINGER, C_CLOSED };

typedef struct conn {
  uv_tcp_t tcp;
  uv_timer_t timer;
  uv_write_t write;
  uv_shutdown_t shutdown;
  thaw_httpd_t *srv;
  struct conn *prev, *next;
  enum conn_state state;
  int handles;     /* handles not yet closed; the conn is freed at 0 */
  int reading;
  int idle;        /* the timer is the keep-alive one (no byte yet) */
  int close_after; /* the reply being written is the last */
  char *head;      /* reply head and body being written */
  char *body;
  size_t len;      /* bytes in buf */
  char buf[HTTPD_HEAD_MAX];
} conn_t;

struct thaw_httpd {
  uv_loop_t *loop;
  uv_tcp_t listener;
  thaw_httpd_handler_cb handler;        /* one of the three */
  thaw_httpd_method_cb method_handler;   /* POST served */
  thaw_httpd_request_cb request_handler; /* POST and bodies served */
  void *data;
  conn_t *conns;
  unsigned nconns; /* accepted and not yet freed, closing ones included */
  int port;
  int listener_open;
  int freeing;
};

/* --- addresses ------------------------------------------------------- */

/* "HOST:PORT", ":PORT" or "[V6]:PORT" into *ss; HOST is an IP address or
 * localhost, so binding never waits for a resolver. */
static int parse_address(const char *s, struct sockaddr_storage *ss,
                         int *wildcard, char *err, size_t errlen) {
  char host[64];
  const char *colon;
  memset(ss, 0, sizeof *ss);
  *wildcard = 0;
  if (s == NULL || *s == '\0')
    return thaw_errf(err, errlen, THAW_EINVAL, "httpd: empty address");
  if (s[0] == '[') {
    const char *close = strchr(s, ']');
    if (close == NULL || close[1] != ':' ||
        (size_t)(close - s - 1) >= sizeof host)
      return thaw_errf(err, errlen, THAW_EINVAL, "httpd: %s: want [IPV6]:PORT",
                       s);
    snprintf(host, sizeof host, "%.*s", (int)(close - s - 1), s + 1);
    colon = close + 1;
  } else {
    colon = strrchr(s, ':');
    if (colon == NULL || (size_t)(colon - s) >= sizeof host)
      return thaw_errf(err, errlen, THAW_EINVAL, "httpd: %s: want HOST:PORT", s);
    snprintf(host, sizeof host, "%.*s", (int)(colon - s), s);
  }
  const char *p = colon + 1;
  size_t n = strlen(p);
  long port = 0;
  if (n == 0 || n > 5 || strspn(p, "0123456789") != n ||
      (port = strtol(p, NULL, 10)) > 65535)
    return thaw_errf(err, errlen, THAW_EINVAL, "httpd: %s: bad port", s);
  if (host[0] == '\0' && s[0] != '[') {
    /* Every address: dual-stack "::" when the kernel has IPv6. */
    int fd = socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
    *wildcard = 1;
    if (fd >= 0) {
      close(fd);
      return uv_ip6_addr("::", (int)port, (struct sockaddr_in6 *)ss) == 0
                 ? 0 : THAW_EINVAL;
    }
    return uv_ip4_addr("0.0.0.0", (int)port, (struct sockaddr_in *)ss) == 0
               ? 0 : THAW_EINVAL;
  }
  if (strcmp(host, "localhost") == 0)
    snprintf(host, sizeof host, "127.0.0.1");
  struct in_addr a4;
  struct in6_addr a6;
  if (s[0] != '[' && inet_pton(AF_INET, host, &a4) == 1)
    return uv_ip4_addr(host, (int)port, (struct sockaddr_in *)ss) == 0
               ? 0 : THAW_EINVAL;
  if (s[0] == '[' && inet_pton(AF_INET6, host, &a6) == 1)
    return uv_ip6_addr(host, (int)port, (struct sockaddr_in6 *)ss) == 0
               ? 0 : THAW_EINVAL;
  return thaw_errf(err, errlen, THAW_EINVAL,
                   "httpd: %s: host must be an IP address or localhost", s);
}

/* --- replies --------------------------------------------------------- */

static const char *reason(int status) {
  switch (status) {
  case 200: return "OK";
  case 204: return "No Content";
  case 301: return "Moved Permanently";
  case 302: return "Found";
  case 304: return "Not Modified";
  case 400: return "Bad Request";
  case 401: return "Unauthorized";
  case 403: return "Forbidden";
  case 404: return "Not Found";
  case 405: return "Method Not Allowed";
  case 408: return "Request Timeout";
  case 413: return "Content Too Large";
  case 429: return "Too Many Requests";
  case 431: return "Request Header Fields Too Large";
  case 500: return "Internal Server Error";
  case 501: return "Not Implemented";
  case 503: return "Service Unavailable";
  case 505: return "HTTP Version Not Supported";
  default: return "Status";
  }
}

static void conn_close(conn_t *c);
static void process(conn_t *c);

static void on_timeout(uv_timer_t *t) { conn_close(t->data); }

static void timer_arm(conn_t *c, uint64_t ms, int idle) {
  c->idle = idle;
  uv_timer_start(&c->timer, on_timeout, ms, 0);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *b) {
  conn_t *c = h->data;
  (void)suggested;
  if (c->state == C_LINGER) /* draining: the bytes are dropped */
    *b = uv_buf_init(c->buf, sizeof c->buf);
  else
    *b = uv_buf_init(c->buf + c->len, (unsigned)(sizeof c->buf - c->len));
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b) {
  conn_t *c = s->data;
  (void)b;
  if (c->state == C_CLOSED)
    return;
  if (n < 0) { /* EOF, reset, or ENOBUFS (never with a sound buffer) */
    conn_close(c);
    return;
  }
  if (n == 0 || c->state != C_READING)
    return;
  if (c->idle) /* the first byte starts the request deadline */
    timer_arm(c, REQUEST_TIMEOUT_MS, 0);
  c->len += (size_t)n;
  process(c);
}

static void read_start(conn_t *c) {
  if (!c->reading &&
      uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) == 0)
    c->reading = 1;
}

static void read_stop(conn_t *c) {
  if (c->reading)
    uv_read_stop((uv_stream_t *)&c->tcp);
  c->reading = 0;
}

static void on_shutdown(uv_shutdown_t *req, int status) {
  conn_t *c = req->data;
  if (status < 0 && c->state != C_CLOSED)
    conn_close(c);
}

/* After the last reply: FIN, then drop input until EOF or LINGER_MS. */
static void linger(conn_t *c) {
  c->state = C_LINGER;
  timer_arm(c, LINGER_MS, 0);
  if (uv_shutdown(&c->shutdown, (uv_stream_t *)&c->tcp, on_shutdown) != 0) {
    conn_close(c);
    return;
  }
  read_start(c);
}

static void on_written(uv_write_t *req, int status) {
  conn_t *c = req->data;
  free(c->head);
  free(c->body);
  c->head = c->body = NULL;
  if (c->state == C_CLOSED)
    return;
  if (status < 0) { /* the client went away */
    conn_close(c);
    return;
  }
  if (c->close_after) {
    linger(c);
    return;
  }
  c->state = C_READING;
  if (c->len > 0) {
    timer_arm(c, REQUEST_TIMEOUT_MS, 0);
    process(c); /* a pipelined request may be complete already */
  } else {
    timer_arm(c, IDLE_TIMEOUT_MS, 1);
  }
  if (c->state == C_READING)
    read_start(c);
}

static void fmt_date(char *buf, size_t len) {
  time_t now = time(NULL);
  struct tm tm;
  gmtime_r(&now, &tm);
  strftime(buf, len, "%a, %d %b %Y %H:%M:%S GMT", &tm);
}

/* Writes the reply; takes reply->body. `allow`: the server's own 405. */
static void send_reply(conn_t *c, thaw_httpd_reply_t *rep, int head,
                       int allow, int close_after) {
  static const struct {
    int status;
    const char *text;
  } error_text[] = {{400, "bad request\n"}, {404, "not found\n"},
                    {405, "method not allowed\n"},
                    {413, "request bodies are refused\n"},
                    {431, "request headers too large\n"},
                    {505, "HTTP version not supported\n"}};
  if (rep->body == NULL) {
    rep->len = 0;
    for (size_t i = 0; i < sizeof error_text / sizeof error_text[0]; i++)
      if (error_text[i].status == rep->status) {
        rep->body = strdup(error_text[i].text);
        rep->len = rep->body ? strlen(rep->body) : 0;
      }
  }
  const char *ct = rep->content_type ? rep->content_type
                                     : "text/plain; charset=utf-8";
  char date[64];
  fmt_date(date, sizeof date);
  const char *allowed = allow ? (c->srv->handler ? "GET, HEAD"
                                                 : "GET, HEAD, POST")
                              : rep->allow;
  size_t cap = 256 + strlen(ct) + (allowed ? strlen(allowed) : 0);
  c->head = malloc(cap);
  if (c->head == NULL) {
    free(rep->body);
    conn_close(c);
    return;
  }
  int n = snprintf(c->head, cap,
                   "HTTP/1.1 %d %s\r\nDate: %s\r\nContent-Type: %s\r\n"
                   "Content-Length: %zu\r\n%s%s%s%s\r\n",
                   rep->status, reason(rep->status), date, ct, rep->len,
                   allowed ? "Allow: " : "", allowed ? allowed : "",
                   allowed ? "\r\n" : "",
                   close_after ? "Connection: close\r\n" : "");
  uv_buf_t bufs[2] = {uv_buf_init(c->head, (unsigned)n),
                      uv_buf_init(rep->body, (unsigned)rep->len)};
  if (head || rep->len == 0) {
    free(rep->body);
    rep->body = NULL;
  }
  c->body = rep->body;
  c->close_after = close_after;
  c->state = C_WRITING;
  read_stop(c);
  timer_arm(c, WRITE_TIMEOUT_MS, 0);
  if (uv_write(&c->write, (uv_stream_t *)&c->tcp, bufs, c->body ? 2 : 1,
               on_written) != 0) {
    free(c->head);
    free(c->body);
    c->head = c->body = NULL;
    conn_close(c);
  }
}

/* Answers the first request in the buffer if it is complete. */
static void process(conn_t *c) {
  /* Empty lines before a request line are ignored (RFC 9112, 2.2). */
  size_t skip = 0;
  while (skip < c->len && (c->buf[skip] == '\r' || c->buf[skip] == '\n'))
    skip++;
  if (skip > 0) {
    memmove(c->buf, c->buf + skip, c->len - skip);
    c->len -= skip;
  }
  req_t r;
  size_t used = httpd_parse_request(c->buf, c->len, &r);
  if (used == 0) {
    if (c->len < sizeof c->buf)
      return; /* wait for more */
    memset(&r, 0, sizeof r);
    r.status = 431;
    r.close = 1;
    used = c->len;
  }
  thaw_httpd_t *s = c->srv;
  if (r.status == 0 && r.post && s->handler != NULL) { /* body or not */
    r.status = 405;
    r.allow = 1;
  } else if (r.status == 0 && r.body && s->request_handler == NULL) {
    r.status = 413;
  }
  thaw_httpd_reply_t rep = {0};
  if (r.status != 0) {
    rep.status = r.status;
  } else {
    if (s->request_handler) {
      thaw_httpd_request_t req = {.method = r.method,
                                  .path = r.path,
                                  .query = r.query,
                                  .authorization = r.authorization,
                                  .has_body = r.body};
      s->request_handler(&req, &rep, s->data);
    } else if (s->method_handler) {
      s->method_handler(r.method, r.path, &rep, s->data);
    } else {
      s->handler(r.path, &rep, s->data);
    }
    if (c->state == C_CLOSED) { /* the handler freed the server */
      free(rep.body);
      return;
    }
    if (rep.status == 0)
      rep.status = 404;
    if (rep.status < 100 || rep.status > 599) {
      free(rep.body);
      rep = (thaw_httpd_reply_t){.status = 500};
    }
    if (rep.body == NULL)
      rep.len = 0;
  }
  memmove(c->buf, c->buf + used, c->len - used);
  c->len -= used;
  send_reply(c, &rep, r.head, r.allow, r.close);
}

/* --- connections ----------------------------------------------------- */

static void maybe_free_server(thaw_httpd_t *s) {
  if (s->freeing && !s->listener_open && s->nconns == 0)
    free(s);
}

static void on_conn_handle_closed(uv_handle_t *h) {
  conn_t *c = h->data;
  if (--c->handles > 0)
    return;
  thaw_httpd_t *s = c->srv;
  free(c->head);
  free(c->body);
  free(c);
  s->nconns--;
  maybe_free_server(s);
}

static void conn_close(conn_t *c) {
  if (c->state == C_CLOSED)
    return;
  c->state = C_CLOSED;
  if (c->prev)
    c->prev->next = c->next;
  else
    c->srv->conns = c->next;
  if (c->next)
    c->next->prev = c->prev;
  c->prev = c->next = NULL;
  uv_close((uv_handle_t *)&c->tcp, on_conn_handle_closed);
  uv_close((uv_handle_t *)&c->timer, on_conn_handle_closed);
}

static void on_rejected_closed(uv_handle_t *h) { free(h); }

static void on_connection(uv_stream_t *l, int status) {
  thaw_httpd_t *s = l->data;
  if (status < 0 || s->freeing)
    return;
  if (s->nconns >= MAX_CONNS) {
    /* Accepted and closed at once, so the backlog does not fill. */
    uv_tcp_t *t = malloc(sizeof *t);
    if (t == NULL)
      return;
    uv_tcp_init(s->loop, t);
    uv_accept(l, (uv_stream_t *)t);
    uv_close((uv_handle_t *)t, on_rejected_closed);
    return;
  }
  conn_t *c = calloc(1, sizeof *c);
  if (c == NULL)
    return;
  c->srv = s;
  c->tcp.data = c->timer.data = c->write.data = c->shutdown.data = c;
  uv_tcp_init(s->loop, &c->tcp);
  uv_timer_init(s->loop, &c->timer);
  c->handles = 2;
  s->nconns++;
  c->next = s->conns;
  if (s->conns)
    s->conns->prev = c;
  s->conns = c;
  if (uv_accept(l, (uv_stream_t *)&c->tcp) != 0) {
    conn_close(c);
    return;
  }
  uv_tcp_nodelay(&c->tcp, 1);
  c->state = C_READING;
  timer_arm(c, REQUEST_TIMEOUT_MS, 0); /* counts from accept, not 1st byte */
  read_start(c);
}

/* --- server ---------------------------------------------------------- */

static void on_listener_closed(uv_handle_t *h) {
  thaw_httpd_t *s = h->data;
  s->listener_open = 0;
  maybe_free_server(s);
}

/* Exactly one of the three handlers is set by the callers below. */
static int start(uv_loop_t *loop, const char *address,
                 thaw_httpd_handler_cb handler,
                 thaw_httpd_method_cb method_handler,
                 thaw_httpd_request_cb request_handler, void *data,
                 thaw_httpd_t **out, char *err, size_t errlen) {
  struct sockaddr_storage ss;
  int wildcard;
  *out = NULL;
  if (loop == NULL ||
      (handler == NULL && method_handler == NULL && request_handler == NULL))
    return thaw_errf(err, errlen, THAW_EINVAL, "httpd: no loop or handler");
  int rc = parse_address(address, &ss, &wildcard, err, errlen);
  if (rc != 0)
    return rc;
  /* Bound and listening before any handle exists, so a failure leaves
   * nothing on the loop to close. */
  int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0)
    return thaw_errf(err, errlen, THAW_EIO, "httpd: %s: socket: %s", address,
                     strerror(errno));
  int one = 1, zero = 0;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (wildcard && ss.ss_family == AF_INET6)
    setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof zero);
  socklen_t sl = ss.ss_family == AF_INET6 ? sizeof(struct sockaddr_in6)
                                           : sizeof(struct sockaddr_in);
  if (bind(fd, (struct sockaddr *)&ss, sl) != 0 || listen(fd, BACKLOG) != 0) {
    int e = errno;
    close(fd);
    return thaw_errf(err, errlen, THAW_EIO, "httpd: %s: %s", address,
                     strerror(e));
  }
  struct sockaddr_storage bound;
  sl = sizeof bound;
  getsockname(fd, (struct sockaddr *)&bound, &sl);
  thaw_httpd_t *s = calloc(1, sizeof *s);
  if (s == NULL) {
    close(fd);
    return THAW_ENOMEM;
  }
  s->loop = loop;
  s->handler = handler;
  s->method_handler = method_handler;
  s->request_handler = request_handler;
  s->data = data;
  s->port = ntohs(bound.ss_family == AF_INET6
                      ? ((struct sockaddr_in6 *)&bound)->sin6_port
                      : ((struct sockaddr_in *)&bound)->sin_port);
  uv_tcp_init(loop, &s->listener);
  s->listener.data = s;
  s->listener_open = 1;
  int owned = (rc = uv_tcp_open(&s->listener, fd)) == 0;
  if (rc == 0)
    rc = uv_listen((uv_stream_t *)&s->listener, BACKLOG, on_connection);
  if (rc != 0) {
    /* Not seen in practice; the handle closes on the next loop run. */
    if (!owned)
      close(fd);
    s->freeing = 1;
    uv_close((uv_handle_t *)&s->listener, on_listener_closed);
    return thaw_errf(err, errlen, THAW_EIO, "httpd: %s: %s", address,
                     uv_strerror(rc));
  }
  *out = s;
  return 0;
}

int thaw_httpd_start(uv_loop_t *loop, const char *address,
                     thaw_httpd_handler_cb handler, void *data,
                     thaw_httpd_t **out, char *err, size_t errlen) {
  return start(loop, address, handler, NULL, NULL, data, out, err, errlen);
}

int thaw_httpd_start_post(uv_loop_t *loop, const char *address,
                          thaw_httpd_method_cb handler, void *data,
                          thaw_httpd_t **out, char *err, size_t errlen) {
  return start(loop, address, NULL, handler, NULL, data, out, err, errlen);
}

int thaw_httpd_start_request(uv_loop_t *loop, const char *address,
                             thaw_httpd_request_cb handler, void *data,
                             thaw_httpd_t **out, char *err, size_t errlen) {
  return start(loop, address, NULL, NULL, handler, data, out, err, errlen);
}

int thaw_httpd_port(const thaw_httpd_t *s) { return s ? s->port : 0; }

void thaw_httpd_free(thaw_httpd_t *s) {
  if (s == NULL || s->freeing)
    return;
  s->freeing = 1;
  uv_close((uv_handle_t *)&s->listener, on_listener_closed);
  while (s->conns != NULL)
    conn_close(s->conns);
}

void thaw_httpd_reply_text(thaw_httpd_reply_t *reply, int status,
                           const char *text) {
  reply->status = status;
  reply->body = strdup(text);
  reply->len = reply->body ? strlen(text) : 0;
}

void thaw_httpd_reply_metrics(thaw_httpd_reply_t *reply, thaw_metrics_t *m) {
  char *out;
  size_t len;
  if (thaw_metrics_render(m, &out, &len) != 0) {
    thaw_httpd_reply_text(reply, 500, "out of memory\n");
    return;
  }
  reply->status = 200;
  reply->content_type = "text/plain; version=0.0.4; charset=utf-8";
  reply->body = out;
  reply->len = len;
}
