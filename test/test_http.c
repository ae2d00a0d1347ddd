/* test_http.c - the generic HTTP client (http.h) against the emulator.
 *
 * Streaming request bodies with pauses, streaming responses with pauses,
 * max_body, aborts and cancellation from callbacks, headers, HEAD, TLS
 * trust options and timeouts. Run under test/with-emulator.sh. */
#include "kube_test.h"

typedef struct {
  int done, calls, err;
  long status;
  char *body;
  size_t len;
  char ctype[128];
  /* behaviour */
  int pause_data_once, paused, cancel_in_response, cancel_in_data,
      abort_in_response;
  const char *src;
  size_t src_len, src_at, piece;
  int pause_read_once;
  thaw_http_req_t *req;
} call_t;

static void unpause_cb(uv_timer_t *t) {
  thaw_http_unpause(t->data);
  uv_close((uv_handle_t *)t, (uv_close_cb)free);
}

static void unpause_later(thaw_http_req_t *req) {
  uv_timer_t *t = malloc(sizeof *t);
  uv_timer_init(loop, t);
  t->data = req;
  uv_timer_start(t, unpause_cb, 50, 0);
}

static int c_response(thaw_http_req_t *req, long status, void *data) {
  call_t *c = data;
  c->status = status;
  const char *ct = thaw_http_header(req, "content-type");
  snprintf(c->ctype, sizeof c->ctype, "%s", ct ? ct : "");
  if (c->cancel_in_response) {
    thaw_http_cancel(req);
    return 0;
  }
  return c->abort_in_response ? THAW_EIO : 0;
}

static int c_data(thaw_http_req_t *req, const char *p, size_t n, void *data) {
  call_t *c = data;
  if (c->cancel_in_data) {
    thaw_http_cancel(req);
    return 0;
  }
  if (c->pause_data_once && !c->paused) {
    c->paused = 1;
    unpause_later(req);
    return THAW_EAGAIN; /* delivered again after the unpause */
  }
  c->body = realloc(c->body, c->len + n + 1);
  memcpy(c->body + c->len, p, n);
  c->len += n;
  c->body[c->len] = '\0';
  return 0;
}

static ssize_t c_read(thaw_http_req_t *req, char *buf, size_t len, void *data) {
  call_t *c = data;
  if (c->pause_read_once && !c->paused && c->src_at > 0) {
    c->paused = 1;
    unpause_later(req);
    return THAW_EAGAIN;
  }
  size_t n = c->src_len - c->src_at;
  if (n > c->piece)
    n = c->piece;
  if (n > len)
    n = len;
  memcpy(buf, c->src + c->src_at, n);
  c->src_at += n;
  return (ssize_t)n;
}

static void c_done(thaw_http_req_t *req, const thaw_http_result_t *res,
                   void *data) {
  (void)req;
  call_t *c = data;
  c->calls++;
  c->done = 1;
  c->err = res->err;
  c->status = res->status;
  CHECK(res->message);
  if (res->body) {
    free(c->body);
    c->body = malloc(res->body_len + 1);
    memcpy(c->body, res->body, res->body_len + 1);
    c->len = res->body_len;
  }
}

static char auth[256];
static char url_buf[512];

static const char *url(const char *path) {
  snprintf(url_buf, sizeof url_buf, "%s%s", env("THAW_EMU_URL"), path);
  return url_buf;
}

static thaw_http_opts_t base(call_t *c, const char *path) {
  static const char *hdrs[3];
  hdrs[0] = auth;
  hdrs[1] = "Accept: application/json";
  hdrs[2] = NULL;
  thaw_http_opts_t o = {.url = url(path), .headers = hdrs,
                        .ca_file = env("THAW_EMU_CA"), .timeout_ms = 20000,
                        .on_response = c_response, .on_done = c_done,
                        .data = c};
  return o;
}

static void run(call_t *c, thaw_http_opts_t *o) {
  CHECK(thaw_http_start(hc, o, &c->req) == 0);
  wait_flag(&c->done, 30000);
  run_idle(10);
  CHECK(c->calls == 1); /* on_done exactly once */
}

static void call_free(call_t *c) {
  free(c->body);
  memset(c, 0, sizeof *c);
}

static void test_streaming_upload(void) {
  const char *pod =
      "{\"apiVersion\":\"v1\",\"kind\":\"Namespace\",\"metadata\":{\"name\":\"http-up\"}}";
  const char *hdrs[] = {auth, "Content-Type: application/json", NULL};
  /* fed 7 bytes at a time, with one pause in the middle */
  call_t c = {.src = pod, .src_len = strlen(pod), .piece = 7, .pause_read_once = 1};
  thaw_http_opts_t o = base(&c, "/api/v1/namespaces");
  o.method = "POST";
  o.headers = hdrs;
  o.read_cb = c_read;
  o.read_len = (long long)c.src_len;
  run(&c, &o);
  CHECK(c.err == 0 && c.status == 201 && c.paused);
  CHECK(strstr(c.body, "\"http-up\""));
  CHECK(strncmp(c.ctype, "application/json", 16) == 0);
  call_free(&c);

  /* a buffered body with a custom method: PUT */
  call_t g = {0};
  o = base(&g, "/api/v1/namespaces/http-up");
  run(&g, &o);
  CHECK(g.err == 0 && g.status == 200);
  cJSON *obj = cJSON_Parse(g.body);
  cJSON_AddObjectToObject(cJSON_GetObjectItem(obj, "metadata"), "labels");
  char *s = cJSON_PrintUnformatted(obj);
  call_free(&g);
  o = base(&g, "/api/v1/namespaces/http-up");
  o.method = "PUT";
  o.headers = hdrs;
  o.body = s;
  o.body_len = strlen(s);
  run(&g, &o);
  CHECK(g.err == 0 && g.status == 200);
  call_free(&g);
  free(s);
  cJSON_Delete(obj);
  printf("ok streaming upload with pause, buffered PUT\n");
}

static void test_streaming_download(void) {
  call_t whole = {0};
  thaw_http_opts_t o = base(&whole, "/api/v1/namespaces");
  run(&whole, &o);
  CHECK(whole.err == 0 && whole.status == 200 && whole.len > 0);

  call_t c = {.pause_data_once = 1};
  o = base(&c, "/api/v1/namespaces");
  o.on_data = c_data;
  run(&c, &o);
  CHECK(c.err == 0 && c.paused && c.len == whole.len);
  CHECK(memcmp(c.body, whole.body, c.len) == 0);
  call_free(&c);

  /* bodies over max_body end with THAW_E2BIG, buffered or streamed */
  for (int streamed = 0; streamed < 2; streamed++) {
    o = base(&c, "/api/v1/namespaces");
    o.max_body = whole.len / 2;
    if (streamed)
      o.on_data = c_data;
    run(&c, &o);
    CHECK(c.err == THAW_E2BIG && c.status == 200);
    call_free(&c);
  }
  call_free(&whole);

  /* HEAD: status and headers, no body */
  o = base(&c, "/api/v1/namespaces");
  o.method = "HEAD";
  run(&c, &o);
  CHECK(c.err == 0 && c.len == 0);
  call_free(&c);
  printf("ok streaming download with pause, max_body, HEAD\n");
}

static void test_abort_and_cancel(void) {
  call_t c = {.abort_in_response = 1};
  thaw_http_opts_t o = base(&c, "/api/v1/namespaces");
  run(&c, &o);
  CHECK(c.err == THAW_EIO && c.status == 200);
  call_free(&c);

  c = (call_t){.cancel_in_response = 1};
  o = base(&c, "/api/v1/namespaces");
  run(&c, &o);
  CHECK(c.err == THAW_ECANCELED);
  call_free(&c);

  c = (call_t){.cancel_in_data = 1};
  o = base(&c, "/api/v1/namespaces");
  o.on_data = c_data;
  run(&c, &o);
  CHECK(c.err == THAW_ECANCELED);
  call_free(&c);

  /* cancel before the loop ever ran it */
  c = (call_t){0};
  o = base(&c, "/api/v1/namespaces");
  CHECK(thaw_http_start(hc, &o, &c.req) == 0);
  thaw_http_cancel(c.req);
  CHECK(c.done && c.calls == 1 && c.err == THAW_ECANCELED);
  run_idle(50);
  CHECK(c.calls == 1);
  call_free(&c);
  printf("ok abort from on_response, cancel from callbacks and before start\n");
}

static void test_tls_and_timeouts(void) {
  /* default trust store does not know the emulator's CA */
  call_t c = {0};
  thaw_http_opts_t o = base(&c, "/api/v1/namespaces");
  o.ca_file = NULL;
  run(&c, &o);
  CHECK(c.err == THAW_ETRANSPORT && c.status == 0);
  call_free(&c);
  o = base(&c, "/api/v1/namespaces");
  o.ca_file = NULL;
  o.insecure = 1;
  run(&c, &o);
  CHECK(c.err == 0 && c.status == 200);
  call_free(&c);
  char *pem = read_text(env("THAW_EMU_CA"));
  o = base(&c, "/api/v1/namespaces");
  o.ca_file = NULL;
  o.ca_pem = pem;
  run(&c, &o);
  CHECK(c.err == 0 && c.status == 200);
  call_free(&c);
  free(pem);

  CHECK(control("POST", "latency", "{\"ms\":500}") == 200);
  o = base(&c, "/api/v1/namespaces");
  o.timeout_ms = 100;
  run(&c, &o);
  CHECK(c.err == THAW_ETIMEDOUT);
  call_free(&c);
  CHECK(control("POST", "latency", "{\"ms\":0}") == 200);

  /* invalid requests never call back */
  o = base(&c, "/x");
  o.url = "file:///etc/passwd";
  CHECK(thaw_http_start(hc, &o, NULL) == THAW_EINVAL);
  call_free(&c);
  o = base(&c, "/x");
  o.on_done = NULL;
  CHECK(thaw_http_start(hc, &o, NULL) == THAW_EINVAL);
  printf("ok TLS trust (file, blob, none, insecure), timeout, bad options\n");
}

static void test_free_in_flight(void) {
  thaw_http_t *h2;
  CHECK(thaw_http_new(loop, &h2) == 0);
  call_t c[4] = {{0}};
  for (int i = 0; i < 4; i++) {
    thaw_http_opts_t o = base(&c[i], "/api/v1/namespaces?watch=1");
    o.on_data = c_data;
    CHECK(thaw_http_start(h2, &o, NULL) == 0);
  }
  run_idle(200);
  thaw_http_free(h2);
  for (int i = 0; i < 4; i++) {
    CHECK(c[i].calls == 1 && c[i].err == THAW_ECANCELED);
    call_free(&c[i]);
  }
  printf("ok free with streams in flight\n");
}

int main(void) {
  setup();
  snprintf(auth, sizeof auth, "Authorization: Bearer %s", env("THAW_EMU_TOKEN"));
  test_streaming_upload();
  test_streaming_download();
  test_abort_and_cancel();
  test_tls_and_timeouts();
  test_free_in_flight();
  teardown();
  return 0;
}
