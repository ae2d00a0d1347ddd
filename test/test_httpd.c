/* test_httpd.c - the plain HTTP server (httpd.h) against raw loopback
 * sockets: GET, HEAD, keep-alive, pipelining, Connection: close, HTTP/1.0,
 * 405/413/400/431/505, the 10 s request deadline (slowloris), the
 * connection limit, clients that vanish mid-write, and a clean shutdown
 * with connections open; a second server from thaw_httpd_start_post()
 * serves POST without a body and tells its handler the method; a third,
 * from thaw_httpd_start_request(), tells its handler the query, the
 * Authorization header and whether a body came (thaw_httpd_query_next()
 * decodes the query: table cases). The servers run on their own loop in a
 * thread; the client is blocking sockets with receive timeouts in the main
 * thread. */
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#include "check.h"
#include "error.h"
#include "httpd.h"

#define BIG_LEN (4u << 20)

/* ---- the server under test ------------------------------------------- */

static uv_loop_t loop;
static uv_async_t stop_async;
static thaw_httpd_t *srv, *post_srv, *req_srv;
static pthread_t loop_thread;
static int port, post_port, req_port;
static atomic_int handled, req_handled;

static char *dupmem(const char *s, size_t n) {
  char *p = malloc(n ? n : 1);
  memcpy(p, s, n);
  return p;
}

static void handler(const char *path, thaw_httpd_reply_t *r, void *data) {
  (void)data;
  atomic_fetch_add(&handled, 1);
  if (strcmp(path, "/healthz") == 0) {
    r->status = 200;
    r->body = dupmem("ok\n", 3);
    r->len = 3;
  } else if (strncmp(path, "/echo", 5) == 0) {
    r->status = 200; /* the path as the handler saw it */
    r->body = dupmem(path, strlen(path));
    r->len = strlen(path);
  } else if (strcmp(path, "/big") == 0) {
    r->status = 200;
    r->body = malloc(BIG_LEN);
    memset(r->body, 'x', BIG_LEN);
    r->len = BIG_LEN;
  } else if (strcmp(path, "/json") == 0) {
    r->status = 503;
    r->content_type = "application/json";
    r->body = dupmem("{}", 2);
    r->len = 2;
  } else if (strcmp(path, "/empty") == 0) {
    r->status = 200;
  }
  /* anything else: status unset, so 404 */
}

/* The POST server's handler: POST /run is 202, GET /run answers the
 * method it saw, /ro allows GET and HEAD only (its own 405). */
static void post_handler(const char *method, const char *path,
                         thaw_httpd_reply_t *r, void *data) {
  (void)data;
  if (strcmp(path, "/run") == 0) {
    r->status = strcmp(method, "POST") == 0 ? 202 : 200;
    r->body = dupmem(method, strlen(method));
    r->len = strlen(method);
  } else if (strcmp(path, "/ro") == 0) {
    if (strcmp(method, "POST") == 0) {
      r->status = 405;
      r->allow = "GET, HEAD";
    } else {
      r->status = 200;
    }
  }
}

/* The request server's handler answers
 * "METHOD|PATH|QUERY|AUTHORIZATION|HAS_BODY" ("-" for no Authorization);
 * /post-404 answers a POST 404, as a token endpoint does. */
static void request_handler(const thaw_httpd_request_t *req,
                            thaw_httpd_reply_t *r, void *data) {
  (void)data;
  atomic_fetch_add(&req_handled, 1);
  if (strcmp(req->path, "/post-404") == 0 && strcmp(req->method, "POST") == 0)
    return;
  char buf[512];
  int n = snprintf(buf, sizeof buf, "%s|%s|%s|%s|%d", req->method, req->path,
                   req->query, req->authorization ? req->authorization : "-",
                   req->has_body);
  r->status = 200;
  r->body = dupmem(buf, (size_t)n);
  r->len = (size_t)n;
}

static void on_stop(uv_async_t *a) {
  thaw_httpd_free(req_srv);
  thaw_httpd_free(post_srv);
  thaw_httpd_free(srv);
  uv_close((uv_handle_t *)a, NULL);
}

static void *run_loop(void *arg) {
  (void)arg;
  uv_run(&loop, UV_RUN_DEFAULT);
  return NULL;
}

static void server_start(void) {
  char err[256] = "";
  uv_loop_init(&loop);
  int rc = thaw_httpd_start(&loop, "127.0.0.1:0", handler, NULL, &srv, err,
                            sizeof err);
  CHECK(rc == 0);
  if (rc != 0) {
    fprintf(stderr, "start: %s\n", err);
    exit(1);
  }
  port = thaw_httpd_port(srv);
  CHECK(port > 0);
  CHECK(thaw_httpd_start_post(&loop, "127.0.0.1:0", post_handler, NULL,
                              &post_srv, err, sizeof err) == 0);
  post_port = thaw_httpd_port(post_srv);
  CHECK(thaw_httpd_start_request(&loop, "127.0.0.1:0", request_handler, NULL,
                                 &req_srv, err, sizeof err) == 0);
  req_port = thaw_httpd_port(req_srv);
  CHECK(req_port > 0);
  uv_async_init(&loop, &stop_async, on_stop);
  pthread_create(&loop_thread, NULL, run_loop, NULL);
}

static void server_stop(void) {
  uv_async_send(&stop_async);
  pthread_join(loop_thread, NULL);
  /* Every handle of the server closed: nothing left on the loop. */
  CHECK(uv_loop_close(&loop) == 0);
}

/* ---- a minimal blocking client --------------------------------------- */

typedef struct {
  int fd;
  size_t len;
  char buf[1 << 16];
} client_t;

typedef struct {
  int status;          /* 0: none (closed or timed out) */
  char headers[4096];  /* raw header block, lower-cased */
  long content_length; /* -1 when absent */
  size_t body_len;     /* bytes of body read */
  char body[256];      /* its start, NUL-terminated */
} resp_t;

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void set_timeout(int fd, double s) {
  struct timeval tv = {(time_t)s, (suseconds_t)((s - (time_t)s) * 1e6)};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
}

static client_t *client_to(int to) {
  client_t *c = calloc(1, sizeof *c);
  c->fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(to)};
  inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
  if (connect(c->fd, (struct sockaddr *)&a, sizeof a) != 0) {
    perror("connect");
    exit(1);
  }
  set_timeout(c->fd, 5);
  return c;
}

static client_t *client_new(void) { return client_to(port); }

static void client_free(client_t *c) {
  close(c->fd);
  free(c);
}

/* Closes with a reset (SO_LINGER 0): the abrupt way a client disappears. */
static void client_reset(client_t *c) {
  struct linger l = {1, 0};
  setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &l, sizeof l);
  client_free(c);
}

static int send_all(client_t *c, const char *s, size_t n) {
  while (n > 0) {
    ssize_t w = send(c->fd, s, n, MSG_NOSIGNAL);
    if (w <= 0)
      return -1;
    s += w;
    n -= (size_t)w;
  }
  return 0;
}

static int sends(client_t *c, const char *s) { return send_all(c, s, strlen(s)); }

/* Reads more into c->buf; returns bytes read, 0 on EOF, -1 on error or
 * timeout. */
static ssize_t fill(client_t *c) {
  if (c->len == sizeof c->buf)
    return -1;
  ssize_t n = recv(c->fd, c->buf + c->len, sizeof c->buf - c->len, 0);
  if (n > 0)
    c->len += (size_t)n;
  return n;
}

static void consume(client_t *c, size_t n) {
  memmove(c->buf, c->buf + n, c->len - n);
  c->len -= n;
}

/* Reads one response; for a HEAD (head=1) the body is not read. */
static resp_t read_resp(client_t *c, int head) {
  resp_t r = {.content_length = -1};
  char *end;
  while ((end = memmem(c->buf, c->len, "\r\n\r\n", 4)) == NULL)
    if (fill(c) <= 0)
      return r;
  size_t hlen = (size_t)(end - c->buf) + 4;
  size_t copy = hlen < sizeof r.headers ? hlen : sizeof r.headers - 1;
  for (size_t i = 0; i < copy; i++)
    r.headers[i] = (char)tolower((unsigned char)c->buf[i]);
  if (sscanf(r.headers, "http/1.1 %d ", &r.status) != 1)
    r.status = -1;
  const char *cl = strstr(r.headers, "\r\ncontent-length: ");
  if (cl)
    r.content_length = strtol(cl + 18, NULL, 10);
  consume(c, hlen);
  if (head || r.content_length <= 0)
    return r;
  size_t want = (size_t)r.content_length;
  while (r.body_len < want) {
    if (c->len == 0 && fill(c) <= 0)
      break;
    size_t take = c->len < want - r.body_len ? c->len : want - r.body_len;
    if (r.body_len < sizeof r.body - 1) {
      size_t room = sizeof r.body - 1 - r.body_len;
      memcpy(r.body + r.body_len, c->buf, take < room ? take : room);
    }
    r.body_len += take;
    consume(c, take);
  }
  r.body[r.body_len < sizeof r.body ? r.body_len : sizeof r.body - 1] = '\0';
  return r;
}

static int has_header(const resp_t *r, const char *line) {
  return strstr(r->headers, line) != NULL;
}

/* Did the server close (EOF or reset) within `secs`, with no more bytes? */
static int closed_within(client_t *c, double secs) {
  set_timeout(c->fd, secs);
  char b[512];
  ssize_t n;
  while ((n = recv(c->fd, b, sizeof b, 0)) > 0)
    ;
  set_timeout(c->fd, 5);
  return n == 0 || (n < 0 && errno == ECONNRESET);
}

/* One request on a fresh connection; the response, and whether the server
 * closed afterwards. */
static resp_t one_shot(const char *req, int head, int *closed) {
  client_t *c = client_new();
  sends(c, req);
  resp_t r = read_resp(c, head);
  if (closed)
    *closed = c->len == 0 && closed_within(c, 3);
  client_free(c);
  return r;
}

/* Waits (up to 2 s) until a new connection is served: the server frees a
 * connection's slot only after it has read the client's close. */
static int wait_serving(void) {
  for (int tries = 0; tries < 100; tries++) {
    client_t *c = client_new();
    sends(c, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
    int served = read_resp(c, 0).status == 200;
    client_free(c);
    if (served)
      return 1;
    usleep(20000);
  }
  return 0;
}

/* ---- cases ----------------------------------------------------------- */

static void test_get_head_keepalive(void) {
  client_t *c = client_new();
  sends(c, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
  resp_t r = read_resp(c, 0);
  CHECK(r.status == 200);
  CHECK(r.content_length == 3);
  CHECK(strcmp(r.body, "ok\n") == 0);
  CHECK(has_header(&r, "\r\ncontent-type: text/plain; charset=utf-8\r\n"));
  CHECK(has_header(&r, "\r\ndate: "));
  CHECK(!has_header(&r, "connection: close"));

  /* HEAD: the same Content-Length, no body. The next reply on the same
   * connection must start right after the head, which proves it. */
  sends(c, "HEAD /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
  r = read_resp(c, 1);
  CHECK(r.status == 200);
  CHECK(r.content_length == 3);
  sends(c, "GET /echo/after-head HTTP/1.1\r\nHost: x\r\n\r\n");
  r = read_resp(c, 0);
  CHECK(r.status == 200);
  CHECK(strcmp(r.body, "/echo/after-head") == 0);

  /* query strings are cut; absolute-form targets are served */
  sends(c, "GET /echo/q?x=1&y=2 HTTP/1.1\r\nHost: x\r\n\r\n");
  r = read_resp(c, 0);
  CHECK(strcmp(r.body, "/echo/q") == 0);
  sends(c, "GET http://x:1/echo/abs?q HTTP/1.1\r\nHost: x\r\n\r\n");
  r = read_resp(c, 0);
  CHECK(strcmp(r.body, "/echo/abs") == 0);

  /* unknown path: 404 with a text body; handler's content type and status */
  sends(c, "GET /nope HTTP/1.1\r\nHost: x\r\n\r\n");
  r = read_resp(c, 0);
  CHECK(r.status == 404);
  CHECK(strcmp(r.body, "not found\n") == 0);
  sends(c, "GET /json HTTP/1.1\r\nHost: x\r\n\r\n");
  r = read_resp(c, 0);
  CHECK(r.status == 503);
  CHECK(has_header(&r, "\r\ncontent-type: application/json\r\n"));
  CHECK(strcmp(r.body, "{}") == 0);
  sends(c, "GET /empty HTTP/1.1\r\nHost: x\r\n\r\n");
  r = read_resp(c, 0);
  CHECK(r.status == 200);
  CHECK(r.content_length == 0);

  /* bare LF line ends, empty lines before the request, Content-Length: 0 */
  sends(c, "\r\n\r\nGET /echo/lf HTTP/1.1\nHost: x\nContent-Length: 0\n\n");
  r = read_resp(c, 0);
  CHECK(r.status == 200);
  CHECK(strcmp(r.body, "/echo/lf") == 0);

  /* the request split across many writes */
  const char *req = "GET /echo/split HTTP/1.1\r\nHost: x\r\n\r\n";
  for (const char *p = req; *p; p++) {
    send_all(c, p, 1);
    usleep(1000);
  }
  r = read_resp(c, 0);
  CHECK(strcmp(r.body, "/echo/split") == 0);

  /* still open: a keep-alive connection stays until the client leaves */
  CHECK(!closed_within(c, 0.3));
  client_free(c);

  /* a request of nearly 8 KiB fits */
  char big[8192];
  int n = snprintf(big, sizeof big, "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Pad: ");
  memset(big + n, 'a', 8100 - (size_t)n);
  memcpy(big + 8100, "\r\n\r\n", 5);
  r = one_shot(big, 0, NULL);
  CHECK(r.status == 200);
}

static void test_pipelining(void) {
  client_t *c = client_new();
  sends(c, "GET /echo/1 HTTP/1.1\r\nHost: x\r\n\r\n"
           "HEAD /echo/2 HTTP/1.1\r\nHost: x\r\n\r\n"
           "GET /nope HTTP/1.1\r\nHost: x\r\n\r\n"
           "GET /echo/4 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
           "GET /echo/never HTTP/1.1\r\nHost: x\r\n\r\n");
  resp_t r = read_resp(c, 0);
  CHECK(r.status == 200 && strcmp(r.body, "/echo/1") == 0);
  r = read_resp(c, 1);
  CHECK(r.status == 200 && r.content_length == 7);
  r = read_resp(c, 0);
  CHECK(r.status == 404);
  r = read_resp(c, 0);
  CHECK(r.status == 200 && strcmp(r.body, "/echo/4") == 0);
  CHECK(has_header(&r, "\r\nconnection: close\r\n"));
  /* nothing after the request that asked to close */
  CHECK(c->len == 0);
  CHECK(closed_within(c, 3));
  client_free(c);

  /* many pipelined requests, more than fit in the 8 KiB buffer at once */
  c = client_new();
  char all[64 * 64];
  size_t len = 0;
  for (int i = 0; i < 64; i++)
    len += (size_t)snprintf(all + len, sizeof all - len,
                            "GET /echo/%d HTTP/1.1\r\nHost: x\r\n\r\n", i);
  sends(c, all);
  int in_order = 1;
  for (int i = 0; i < 64; i++) {
    char want[32];
    snprintf(want, sizeof want, "/echo/%d", i);
    r = read_resp(c, 0);
    in_order &= r.status == 200 && strcmp(r.body, want) == 0;
  }
  CHECK(in_order);
  client_free(c);
}

static void test_close_and_http10(void) {
  int closed;
  resp_t r = one_shot("GET /healthz HTTP/1.1\r\nHost: x\r\n"
                      "Connection: keep-alive, Close\r\n\r\n", 0, &closed);
  CHECK(r.status == 200);
  CHECK(has_header(&r, "\r\nconnection: close\r\n"));
  CHECK(closed);

  r = one_shot("GET /healthz HTTP/1.0\r\n\r\n", 0, &closed); /* no Host needed */
  CHECK(r.status == 200);
  CHECK(strcmp(r.body, "ok\n") == 0);
  CHECK(has_header(&r, "\r\nconnection: close\r\n"));
  CHECK(closed);

  r = one_shot("HEAD /healthz HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", 1,
               &closed);
  CHECK(r.status == 200 && r.content_length == 3);
  CHECK(closed); /* and no body bytes before the close */
}

static void test_methods_and_bodies(void) {
  /* 405 with Allow; without a body the connection stays usable */
  client_t *c = client_new();
  sends(c, "POST /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
  resp_t r = read_resp(c, 0);
  CHECK(r.status == 405);
  CHECK(has_header(&r, "\r\nallow: get, head\r\n"));
  CHECK(!has_header(&r, "connection: close"));
  sends(c, "DELETE /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
  r = read_resp(c, 0);
  CHECK(r.status == 405);
  sends(c, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
  r = read_resp(c, 0);
  CHECK(r.status == 200);
  client_free(c);

  int closed;
  /* a POST with a body: 405, then close (the body is never read) */
  r = one_shot("POST /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\n"
               "hello", 0, &closed);
  CHECK(r.status == 405);
  CHECK(closed);

  /* bodies are refused: 413 then close */
  static const char *const bodies[] = {
      "GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n0123456789",
      ("GET /healthz HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
       "5\r\nhello\r\n0\r\n\r\n"),
      "HEAD /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\nx",
  };
  for (size_t i = 0; i < sizeof bodies / sizeof *bodies; i++) {
    r = one_shot(bodies[i], strncmp(bodies[i], "HEAD", 4) == 0, &closed);
    if (r.status != 413 || !closed)
      fprintf(stderr, "body case %zu: status %d closed %d\n", i, r.status,
              closed);
    CHECK(r.status == 413);
    CHECK(has_header(&r, "\r\nconnection: close\r\n"));
    CHECK(closed);
  }

  /* a large body behind the request: the 413 still arrives (the server
   * drains instead of resetting) */
  c = client_new();
  char *body = malloc(1 << 20);
  memset(body, 'b', 1 << 20);
  sends(c, "GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 1048576\r\n\r\n");
  send_all(c, body, 1 << 16);
  r = read_resp(c, 0);
  CHECK(r.status == 413);
  free(body);
  client_free(c);
}

static void test_post_server(void) {
  client_t *c = client_to(post_port);
  /* POST without a body (none, or Content-Length: 0), keep-alive */
  sends(c, "POST /run HTTP/1.1\r\nHost: x\r\n\r\n");
  resp_t r = read_resp(c, 0);
  CHECK(r.status == 202 && strcmp(r.body, "POST") == 0);
  CHECK(!has_header(&r, "connection: close"));
  sends(c, "POST /run HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n");
  r = read_resp(c, 0);
  CHECK(r.status == 202);
  sends(c, "GET /run HTTP/1.1\r\nHost: x\r\n\r\n");
  r = read_resp(c, 0);
  CHECK(r.status == 200 && strcmp(r.body, "GET") == 0);
  sends(c, "HEAD /run HTTP/1.1\r\nHost: x\r\n\r\n");
  r = read_resp(c, 1);
  CHECK(r.status == 200 && r.content_length == 4);
  /* the handler's own 405 carries its Allow */
  sends(c, "POST /ro HTTP/1.1\r\nHost: x\r\n\r\n");
  r = read_resp(c, 0);
  CHECK(r.status == 405 && has_header(&r, "\r\nallow: get, head\r\n"));
  /* other methods: the server's 405 names POST too */
  sends(c, "DELETE /run HTTP/1.1\r\nHost: x\r\n\r\n");
  r = read_resp(c, 0);
  CHECK(r.status == 405 && has_header(&r, "\r\nallow: get, head, post\r\n"));
  sends(c, "GET /nope HTTP/1.1\r\nHost: x\r\n\r\n");
  r = read_resp(c, 0);
  CHECK(r.status == 404);
  client_free(c);
  /* a POST body is refused: 413, then close */
  c = client_to(post_port);
  sends(c, "POST /run HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}");
  r = read_resp(c, 0);
  CHECK(r.status == 413 && has_header(&r, "\r\nconnection: close\r\n"));
  CHECK(c->len == 0 && closed_within(c, 3));
  client_free(c);
}

/* One request to the request server on a fresh connection: its echo. */
static resp_t req_one_shot(const char *req, int *closed) {
  client_t *c = client_to(req_port);
  sends(c, req);
  resp_t r = read_resp(c, strncmp(req, "HEAD", 4) == 0);
  *closed = c->len == 0 && closed_within(c, 3);
  client_free(c);
  return r;
}

static void test_request_server(void) {
  /* query and Authorization reach the handler; keep-alive */
  static const struct {
    const char *req, *echo;
  } cases[] = {
      {"GET /token?service=reg&scope=a&scope=b HTTP/1.1\r\nHost: x\r\n"
       "Authorization:   Basic dTpw  \r\n\r\n",
       "GET|/token|service=reg&scope=a&scope=b|Basic dTpw|0"},
      {"GET /token HTTP/1.1\r\nHost: x\r\n\r\n", "GET|/token||-|0"},
      {"GET /token? HTTP/1.1\r\nHost: x\r\n\r\n", "GET|/token||-|0"},
      {"GET /token?a=1#frag?b=2 HTTP/1.1\r\nHost: x\r\n\r\n",
       "GET|/token|a=1|-|0"},
      {"GET /token#frag?b=2 HTTP/1.1\r\nHost: x\r\n\r\n",
       "GET|/token||-|0"},
      {"GET http://x:1/token?service=s%20t HTTP/1.1\r\nHost: x\r\n"
       "authorization: Bearer t\r\n\r\n",
       "GET|/token|service=s%20t|Bearer t|0"},
      {"GET http://x?q=1 HTTP/1.1\r\nHost: x\r\n\r\n", "GET|/|q=1|-|0"},
      {"GET /token HTTP/1.1\r\nHost: x\r\nAuthorization:\r\n\r\n",
       "GET|/token|||0"}, /* present and empty */
      {"POST /token?x HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n",
       "POST|/token|x|-|0"},
  };
  client_t *c = client_to(req_port);
  for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
    sends(c, cases[i].req);
    resp_t r = read_resp(c, 0);
    if (r.status != 200 || strcmp(r.body, cases[i].echo) != 0)
      fprintf(stderr, "request case %zu: %d '%s' (want '%s')\n", i, r.status,
              r.body, cases[i].echo);
    CHECK(r.status == 200 && strcmp(r.body, cases[i].echo) == 0);
    CHECK(!has_header(&r, "connection: close"));
  }
  /* HEAD: the handler sees it; the body is not sent */
  sends(c, "HEAD /token?a HTTP/1.1\r\nHost: x\r\n\r\n");
  resp_t r = read_resp(c, 1);
  CHECK(r.status == 200 &&
        r.content_length == (long)strlen("HEAD|/token|a|-|0"));
  /* other methods: the server's 405 names POST */
  sends(c, "DELETE /token HTTP/1.1\r\nHost: x\r\n\r\n");
  r = read_resp(c, 0);
  CHECK(r.status == 405 && has_header(&r, "\r\nallow: get, head, post\r\n"));
  sends(c, "GET /still HTTP/1.1\r\nHost: x\r\n\r\n");
  r = read_resp(c, 0);
  CHECK(r.status == 200 && strcmp(r.body, "GET|/still||-|0") == 0);
  client_free(c);

  /* a body reaches the handler (has_body), unread; then the close */
  int closed, before = atomic_load(&req_handled);
  r = req_one_shot("POST /token HTTP/1.1\r\nHost: x\r\nContent-Length: 5"
                   "\r\n\r\nhello", &closed);
  CHECK(r.status == 200 && strcmp(r.body, "POST|/token||-|1") == 0);
  CHECK(has_header(&r, "\r\nconnection: close\r\n"));
  CHECK(closed);
  r = req_one_shot("POST /post-404 HTTP/1.1\r\nHost: x\r\nContent-Type: "
                   "application/x-www-form-urlencoded\r\nContent-Length: 9"
                   "\r\n\r\ngrant_typ", &closed);
  CHECK(r.status == 404 && has_header(&r, "\r\nconnection: close\r\n"));
  CHECK(closed);
  r = req_one_shot("GET /t HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked"
                   "\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
                   "GET /never HTTP/1.1\r\nHost: x\r\n\r\n", &closed);
  CHECK(r.status == 200 && strcmp(r.body, "GET|/t||-|1") == 0);
  CHECK(closed); /* the chunks were not taken for a request */
  CHECK(atomic_load(&req_handled) == before + 3);

  /* two Authorization headers: 400, the handler is not called */
  before = atomic_load(&req_handled);
  r = req_one_shot("GET /token HTTP/1.1\r\nHost: x\r\nAuthorization: Basic a"
                   "\r\nauthorization: Basic b\r\n\r\n", &closed);
  CHECK(r.status == 400 && closed);
  r = req_one_shot("GET /token HTTP/1.1\r\nHost: x\r\nAuthorization: Basic a"
                   "\r\nAuthorization: Basic a\r\n\r\n", &closed);
  CHECK(r.status == 400 && closed);
  CHECK(atomic_load(&req_handled) == before);
  /* the other servers ignore one Authorization, and refuse two */
  r = one_shot("GET /echo/a?q HTTP/1.1\r\nHost: x\r\nAuthorization: x\r\n\r\n",
               0, &closed);
  CHECK(r.status == 200 && strcmp(r.body, "/echo/a") == 0 && !closed);
  r = one_shot("GET /echo/a HTTP/1.1\r\nHost: x\r\nAuthorization: x\r\n"
               "Authorization: y\r\n\r\n", 0, &closed);
  CHECK(r.status == 400 && closed);
}

/* Every parameter of `query` as "name=value;" into out, and the last
 * result of thaw_httpd_query_next() (0 at the end, or the error). */
static int query_all(const char *query, char *out, size_t outlen) {
  size_t pos = 0, len = 0;
  char name[8], value[8];
  int rc;
  out[0] = '\0';
  while ((rc = thaw_httpd_query_next(query, &pos, name, sizeof name, value,
                                     sizeof value)) == 1)
    len += (size_t)snprintf(out + len, outlen - len, "%s=%s;", name, value);
  if (rc != 0) { /* an error leaves pos where it was: the same again */
    size_t again = pos;
    CHECK(thaw_httpd_query_next(query, &again, name, sizeof name, value,
                                sizeof value) == rc && again == pos);
  }
  return rc;
}

static void test_query_next(void) {
  static const struct {
    const char *query, *want;
    int rc;
  } cases[] = {
      {"", "", 0},
      {"a=1", "a=1;", 0},
      {"a=1&b=2", "a=1;b=2;", 0},
      {"scope=a&scope=b&s=c", "scope=a;scope=b;s=c;", 0},
      {"s=r%3Ax%2Cy", "s=r:x,y;", 0},
      {"%41%62=%7e", "Ab=~;", 0},
      {"q=a+b%20c", "q=a b c;", 0},
      {"q=%2B", "q=+;", 0},
      {"q=%C3%A9", "q=\xc3\xa9;", 0},
      {"a=&b", "a=;b=;", 0},
      {"a&b=2", "a=;b=2;", 0},
      {"&&a=1&&", "a=1;", 0},
      {"a=b=c", "a=b=c;", 0},
      {"=v", "=v;", 0},
      {"a=1234567", "a=1234567;", 0},      /* 7 bytes: fits a cap of 8 */
      {"1234567=x", "1234567=x;", 0},
      {"a=%zz", "", THAW_EINVAL},
      {"x=1&a=%zz", "x=1;", THAW_EINVAL},
      {"a=%4", "", THAW_EINVAL},
      {"a=%4&b=1", "", THAW_EINVAL},       /* the escape stops at '&' */
      {"%4=x", "", THAW_EINVAL},
      {"a=%", "", THAW_EINVAL},
      {"a=%g0", "", THAW_EINVAL},
      {"a=%00", "", THAW_EINVAL},          /* would cut the string */
      {"a=12345678", "", THAW_EINVAL},     /* 8 bytes: over the cap */
      {"a=1&b=1234%41567", "a=1;", THAW_EINVAL},
      {"12345678=x", "", THAW_EINVAL},
  };
  for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
    char got[256];
    int rc = query_all(cases[i].query, got, sizeof got);
    if (rc != cases[i].rc || strcmp(got, cases[i].want) != 0)
      fprintf(stderr, "query '%s': %d '%s' (want %d '%s')\n", cases[i].query,
              rc, got, cases[i].rc, cases[i].want);
    CHECK(rc == cases[i].rc);
    CHECK(strcmp(got, cases[i].want) == 0);
  }
  /* a cap of 1 holds only the NUL; bad arguments */
  char n[8], v[8];
  size_t pos = 0;
  CHECK(thaw_httpd_query_next("=", &pos, n, 1, v, 1) == 1);
  CHECK(n[0] == '\0' && v[0] == '\0' && pos == 1);
  CHECK(thaw_httpd_query_next("=", &pos, n, 1, v, 1) == 0);
  pos = 0;
  CHECK(thaw_httpd_query_next("a", &pos, n, 1, v, 1) == THAW_EINVAL);
  CHECK(thaw_httpd_query_next(NULL, &pos, n, sizeof n, v, sizeof v) ==
        THAW_EINVAL);
  CHECK(thaw_httpd_query_next("a", NULL, n, sizeof n, v, sizeof v) ==
        THAW_EINVAL);
  CHECK(thaw_httpd_query_next("a", &pos, n, 0, v, sizeof v) == THAW_EINVAL);
  pos = 5;
  CHECK(thaw_httpd_query_next("a", &pos, n, sizeof n, v, sizeof v) ==
        THAW_EINVAL);
}

static void test_malformed(void) {
  static const struct {
    const char *req;
    int status;
  } cases[] = {
      {"GARBAGE\r\n\r\n", 400},
      {"GET /\r\n\r\n", 400},                        /* HTTP/0.9 */
      {"GET  / HTTP/1.1\r\nHost: x\r\n\r\n", 400},   /* two spaces */
      {"GET / HTTP/1.1 x\r\nHost: x\r\n\r\n", 400},
      {"GET / FOO/1.1\r\nHost: x\r\n\r\n", 400},
      {"GET / http/1.1\r\nHost: x\r\n\r\n", 400},
      {"GET noslash HTTP/1.1\r\nHost: x\r\n\r\n", 400},
      {"G(T / HTTP/1.1\r\nHost: x\r\n\r\n", 400},     /* not a token */
      {"GET /a\x01 HTTP/1.1\r\nHost: x\r\n\r\n", 400},
      {"GET / HTTP/1.1\r\n\r\n", 400},               /* 1.1 without Host */
      {"GET / HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n", 400},
      {"GET / HTTP/1.1\r\nHost: x\r\nNoColon\r\n\r\n", 400},
      {"GET / HTTP/1.1\r\nHost: x\r\nX-A : b\r\n\r\n", 400},
      {"GET / HTTP/1.1\r\nHost: x\r\n: b\r\n\r\n", 400},
      {"GET / HTTP/1.1\r\nHost: x\r\nX-A: b\r\n c\r\n\r\n", 400}, /* fold */
      {"GET / HTTP/1.1\r\nHost: x\r\nX-A: b\rc\r\n\r\n", 400},
      {"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n", 400},
      {"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n", 400},
      {"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n"
       "Content-Length: 2\r\n\r\n", 400},
      {"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n"
       "Transfer-Encoding: chunked\r\n\r\n", 400},  /* smuggling shape */
      {"GET / HTTP/2.0\r\nHost: x\r\n\r\n", 505},
      {"GET / HTTP/0.9\r\nHost: x\r\n\r\n", 505},
  };
  for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
    int closed;
    resp_t r = one_shot(cases[i].req, 0, &closed);
    if (r.status != cases[i].status || !closed)
      fprintf(stderr, "malformed case %zu: status %d (want %d), closed %d\n",
              i, r.status, cases[i].status, closed);
    CHECK(r.status == cases[i].status);
    CHECK(closed);
  }
  /* a NUL byte in a header value */
  client_t *c = client_new();
  static const char nul[] = "GET / HTTP/1.1\r\nHost: x\r\nX-A: a\0b\r\n\r\n";
  send_all(c, nul, sizeof nul - 1);
  resp_t r = read_resp(c, 0);
  CHECK(r.status == 400);
  CHECK(closed_within(c, 3));
  client_free(c);
}

static void test_oversized(void) {
  static char req[12000];
  /* headers past 8 KiB */
  int n = snprintf(req, sizeof req, "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: ");
  memset(req + n, 'a', 9000);
  memcpy(req + n + 9000, "\r\n\r\n", 5);
  int closed;
  resp_t r = one_shot(req, 0, &closed);
  CHECK(r.status == 431);
  CHECK(closed);
  /* a request line past 8 KiB */
  memcpy(req, "GET /", 5);
  memset(req + 5, 'a', 10000);
  static const char tail[] = " HTTP/1.1\r\nHost: x\r\n\r\n";
  memcpy(req + 10005, tail, sizeof tail);
  r = one_shot(req, 0, &closed);
  CHECK(r.status == 431);
  CHECK(closed);
  /* 8 KiB of headers with no end at all */
  memset(req, 'a', 8192);
  req[8192] = '\0';
  r = one_shot(req, 0, &closed);
  CHECK(r.status == 431);
  CHECK(closed);
}

/* Polls fd without blocking: 1 when the server has closed it. */
static int gone(int fd) {
  struct pollfd p = {fd, POLLIN, 0};
  char b[64];
  return poll(&p, 1, 0) == 1 && recv(fd, b, sizeof b, MSG_DONTWAIT) <= 0;
}

/* The 10 s request deadline, counted from accept: a client trickling one
 * byte a second, one that sends nothing, and one that starts trickling at
 * 6 s are all cut at 10 s, while others are served. A keep-alive
 * connection idle after a reply is not a slow request: it lives on past
 * 10 s (its idle timeout is 30 s). */
static void test_slowloris(void) {
  enum { SLOW, SILENT, LATE, KEPT, N };
  static const char *const names[N] = {"slow", "silent", "late", "kept"};
  client_t *cs[N];
  double closed[N] = {0};
  for (int i = 0; i < N; i++)
    cs[i] = client_new();
  double t0 = now_s();
  sends(cs[SLOW], "GET /healthz HTTP/1.1\r\n");
  sends(cs[KEPT], "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
  CHECK(read_resp(cs[KEPT], 0).status == 200);
  double served_at = 0;
  while (now_s() - t0 < 13.5) {
    double t = now_s() - t0;
    if (!closed[SLOW])
      send(cs[SLOW]->fd, "X", 1, MSG_NOSIGNAL);
    if (!closed[LATE] && t > 6)
      send(cs[LATE]->fd, "G", 1, MSG_NOSIGNAL);
    usleep(500000);
    for (int i = 0; i < N; i++)
      if (!closed[i] && gone(cs[i]->fd))
        closed[i] = now_s() - t0;
    if (served_at == 0 && t > 3) {
      resp_t r = one_shot("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n", 0, NULL);
      CHECK(r.status == 200);
      served_at = now_s() - t0;
    }
  }
  for (int i = 0; i < N; i++)
    fprintf(stderr, "slowloris: %s closed at %.1f s (0: open)\n", names[i],
            closed[i]);
  CHECK(closed[SLOW] >= 9.5 && closed[SLOW] <= 12.5);
  CHECK(closed[SILENT] >= 9.5 && closed[SILENT] <= 12.5);
  CHECK(closed[LATE] >= 9.5 && closed[LATE] <= 12.5);
  CHECK(closed[KEPT] == 0);
  CHECK(served_at > 0 && served_at < 5);
  /* the kept connection still serves */
  sends(cs[KEPT], "GET /echo/kept HTTP/1.1\r\nHost: x\r\n\r\n");
  resp_t r = read_resp(cs[KEPT], 0);
  CHECK(r.status == 200 && strcmp(r.body, "/echo/kept") == 0);
  for (int i = 0; i < N; i++)
    client_free(cs[i]);
}

/* 256 connections are served; the 257th is accepted and closed at once;
 * after one leaves, a new one is served again. */
static void test_connection_limit(void) {
  enum { N = 256 };
  static client_t *cs[N];
  int ok = 1;
  for (int i = 0; i < N; i++) {
    cs[i] = client_new();
    sends(cs[i], "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
    ok &= read_resp(cs[i], 0).status == 200;
  }
  CHECK(ok);
  client_t *extra = client_new();
  sends(extra, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
  resp_t r = read_resp(extra, 0);
  CHECK(r.status == 0);
  CHECK(closed_within(extra, 1));
  client_free(extra);

  client_free(cs[0]);
  cs[0] = NULL;
  CHECK(wait_serving()); /* once the server has seen that close */
  for (int i = 1; i < N; i++)
    client_free(cs[i]);
  /* all of them gone: 255 at once are served again */
  CHECK(wait_serving());
  ok = 1;
  for (int i = 0; i < N - 1; i++) {
    cs[i] = client_new();
    sends(cs[i], "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
    ok &= read_resp(cs[i], 0).status == 200;
  }
  CHECK(ok);
  for (int i = 0; i < N - 1; i++)
    client_free(cs[i]);
  CHECK(wait_serving());
}

/* Clients that vanish while a 4 MiB reply is being written. */
static void test_disconnect_mid_write(void) {
  for (int i = 0; i < 5; i++) {
    client_t *c = client_new();
    sends(c, "GET /big HTTP/1.1\r\nHost: x\r\n\r\n");
    if (i % 2)
      fill(c); /* take a little of it first */
    client_reset(c);
  }
  /* pipelined big replies, never read, then a plain close */
  client_t *c = client_new();
  for (int i = 0; i < 8; i++)
    sends(c, "GET /big HTTP/1.1\r\nHost: x\r\n\r\n");
  usleep(100000);
  client_free(c);
  /* read a whole big reply: the server writes large bodies correctly */
  c = client_new();
  sends(c, "GET /big HTTP/1.1\r\nHost: x\r\n\r\n");
  resp_t r = read_resp(c, 0);
  CHECK(r.status == 200);
  CHECK(r.body_len == BIG_LEN);
  client_free(c);
  /* HEAD of a big reply sends no body */
  c = client_new();
  sends(c, "HEAD /big HTTP/1.1\r\nHost: x\r\n\r\n"
           "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
  r = read_resp(c, 1);
  CHECK(r.status == 200 && r.content_length == (long)BIG_LEN);
  r = read_resp(c, 0);
  CHECK(r.status == 200 && strcmp(r.body, "ok\n") == 0);
  client_free(c);
  /* and the server is still fine */
  r = one_shot("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n", 0, NULL);
  CHECK(r.status == 200);
}

static void test_addresses(void) {
  uv_loop_t l;
  uv_loop_init(&l);
  thaw_httpd_t *s = (thaw_httpd_t *)1;
  char err[256];
  static const char *const bad[] = {
      "", "8081", "nope:80", "example.com:80", "127.0.0.1:", "127.0.0.1:x",
      "127.0.0.1:65536", "127.0.0.1:-1", "[::1]", "[::1]80", "[1.2.3.4]:80",
      "::1:80", "[zz]:80", "localhost:123456"};
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    err[0] = '\0';
    int rc = thaw_httpd_start(&l, bad[i], handler, NULL, &s, err, sizeof err);
    if (rc != THAW_EINVAL)
      fprintf(stderr, "address '%s': %d\n", bad[i], rc);
    CHECK(rc == THAW_EINVAL);
    CHECK(s == NULL);
    CHECK(err[0] != '\0');
  }
  /* the port of the running server is taken */
  char addr[64];
  snprintf(addr, sizeof addr, "127.0.0.1:%d", port);
  err[0] = '\0';
  CHECK(thaw_httpd_start(&l, addr, handler, NULL, &s, err, sizeof err) ==
        THAW_EIO);
  CHECK(strstr(err, "in use") != NULL);
  /* localhost and [::1] bind (when the kernel has IPv6) */
  CHECK(thaw_httpd_start(&l, "localhost:0", handler, NULL, &s, err,
                         sizeof err) == 0);
  CHECK(thaw_httpd_port(s) > 0);
  thaw_httpd_free(s);
  int fd6 = socket(AF_INET6, SOCK_STREAM, 0);
  if (fd6 >= 0) {
    close(fd6);
    CHECK(thaw_httpd_start(&l, "[::1]:0", handler, NULL, &s, err,
                           sizeof err) == 0);
    thaw_httpd_free(s);
  }
  thaw_httpd_free(NULL);
  uv_run(&l, UV_RUN_DEFAULT);
  CHECK(uv_loop_close(&l) == 0);
}

int main(int argc, char **argv) {
  signal(SIGPIPE, SIG_IGN); /* as the daemons' main() */
  server_start();
  int quick = argc > 1 && strcmp(argv[1], "--quick") == 0;
  test_addresses();
  test_get_head_keepalive();
  test_pipelining();
  test_close_and_http10();
  test_methods_and_bodies();
  test_post_server();
  test_request_server();
  test_query_next();
  test_malformed();
  test_oversized();
  test_disconnect_mid_write();
  test_connection_limit();
  if (!quick)
    test_slowloris();
  /* stopping with connections still open (idle and mid-request) */
  client_t *idle = client_new(), *partial = client_new();
  sends(partial, "GET /healthz HTTP/1.1\r\n");
  usleep(50000);
  server_stop();
  CHECK(closed_within(idle, 2));
  client_free(idle);
  client_free(partial);
  CHECK(atomic_load(&handled) > 300);
  if (failures)
    fprintf(stderr, "%d failures\n", failures);
  return failures != 0;
}
