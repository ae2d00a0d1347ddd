/* probe.c - the health gate on the cache registry: a repeating uv timer
 * starts one GET /v2/ at a time; results move a two-failure hysteresis.
 *
 * The timer repeats every interval from the first probe, so probes start on
 * a fixed grid; a tick that finds a probe still in flight is skipped, so
 * probes never overlap. The probe memory goes in the timer's close callback,
 * after any in-flight request was cancelled (which calls back at once). */
#include "probe.h"

#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "log.h"

#define MAX_URL 2048
#define FAILS_TO_DOWN 2

struct thaw_probe {
  uv_loop_t *loop;
  thaw_http_t *http;
  char *url;      /* <registry-url>/v2/ */
  char *log_url;  /* the same without user:password@ */
  unsigned interval_ms, timeout_ms;
  thaw_probe_change_cb on_change;
  void *change_data;
  thaw_probe_result_cb on_result;
  void *result_data;
  uv_timer_t timer;
  thaw_http_req_t *inflight;
  int started, freeing, up, fails;
};

/* http(s)://authority[/path] with no query, fragment, blank or control
 * byte; the authority is not empty. */
static int url_ok(const char *u, size_t n) {
  size_t skip;
  if (strncmp(u, "http://", 7) == 0)
    skip = 7;
  else if (strncmp(u, "https://", 8) == 0)
    skip = 8;
  else
    return 0;
  if (n <= skip || u[skip] == '/')
    return 0;
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)u[i];
    if (c <= ' ' || c == 0x7f || c == '?' || c == '#')
      return 0;
  }
  return 1;
}

/* Copies the URL without any userinfo, so logs never carry credentials. */
static char *strip_userinfo(const char *u) {
  const char *auth = strstr(u, "://") + 3;
  const char *end = auth + strcspn(auth, "/");
  const char *at = memchr(auth, '@', (size_t)(end - auth));
  if (!at)
    return strdup(u);
  size_t head = (size_t)(auth - u), tail = strlen(at + 1);
  char *out = malloc(head + tail + 1);
  if (!out)
    return NULL;
  memcpy(out, u, head);
  memcpy(out + head, at + 1, tail + 1);
  return out;
}

int thaw_probe_new(uv_loop_t *loop, thaw_http_t *http,
                   const char *registry_url, thaw_probe_t **out) {
  if (!loop || !http || !registry_url || !out)
    return THAW_EINVAL;
  size_t n = strnlen(registry_url, MAX_URL);
  if (n >= MAX_URL)
    return THAW_EINVAL;
  while (n > 0 && registry_url[n - 1] == '/')
    n--; /* "http://reg:5000/" means the same registry */
  if (!url_ok(registry_url, n))
    return THAW_EINVAL;
  thaw_probe_t *p = calloc(1, sizeof *p);
  if (!p)
    return THAW_ENOMEM;
  p->url = malloc(n + sizeof "/v2/");
  if (!p->url)
    goto fail;
  memcpy(p->url, registry_url, n);
  memcpy(p->url + n, "/v2/", sizeof "/v2/");
  p->log_url = strip_userinfo(p->url);
  if (!p->log_url)
    goto fail;
  p->loop = loop;
  p->http = http;
  p->interval_ms = 2000;
  p->timeout_ms = 1000;
  if (uv_timer_init(loop, &p->timer) != 0)
    goto fail;
  p->timer.data = p;
  *out = p;
  return 0;
fail:
  free(p->url);
  free(p->log_url);
  free(p);
  return THAW_ENOMEM;
}

void thaw_probe_set_timing(thaw_probe_t *p, unsigned interval_ms,
                           unsigned timeout_ms) {
  if (!p)
    return;
  p->interval_ms = interval_ms ? interval_ms : 2000;
  p->timeout_ms = timeout_ms ? timeout_ms : 1000;
}

void thaw_probe_set_observer(thaw_probe_t *p, thaw_probe_change_cb cb,
                             void *data) {
  if (!p)
    return;
  p->on_change = cb;
  p->change_data = data;
}

void thaw_probe_set_result_hook(thaw_probe_t *p, thaw_probe_result_cb cb,
                                void *data) {
  if (!p)
    return;
  p->on_result = cb;
  p->result_data = data;
}

int thaw_probe_up(const thaw_probe_t *p) { return p && p->up; }

/* Applies one outcome: up after one success, down after FAILS_TO_DOWN in a
 * row. Callbacks may free the probe; p stays valid until the timer closes,
 * but nothing runs after `freeing` is set. */
static void record(thaw_probe_t *p, int ok, long status, int err) {
  int was = p->up;
  if (ok) {
    p->fails = 0;
    p->up = 1;
  } else if (++p->fails >= FAILS_TO_DOWN) {
    p->up = 0;
  }
  if (p->up != was) {
    char code[16];
    snprintf(code, sizeof code, "%ld", status);
    if (p->up)
      thaw_info("cache registry up", "url", p->log_url, "status", code);
    else
      thaw_warn("cache registry down", "url", p->log_url, "status", code,
                "error", err ? thaw_strerror(err) : "unexpected status");
    if (p->on_change)
      p->on_change(p->up, p->change_data);
  }
  if (!p->freeing && p->on_result)
    p->on_result(ok, status, p->result_data);
}

static void on_done(thaw_http_req_t *req, const thaw_http_result_t *res,
                    void *data) {
  (void)req;
  thaw_probe_t *p = data;
  p->inflight = NULL;
  /* Cancelled by thaw_probe_free() or thaw_http_free(): no verdict. */
  if (p->freeing || res->err == THAW_ECANCELED)
    return;
  int ok = res->err == 0 && (res->status == 200 || res->status == 401);
  record(p, ok, res->status, res->err);
}

static void tick(uv_timer_t *t) {
  thaw_probe_t *p = t->data;
  if (p->inflight || p->freeing)
    return; /* still waiting for the last one: skip this tick */
  thaw_http_opts_t o = {0};
  o.url = p->url;
  o.timeout_ms = p->timeout_ms;
  o.connect_timeout_ms = p->timeout_ms;
  o.max_body = 64 << 10; /* /v2/ answers "{}"; anything big is not it */
  o.on_done = on_done;
  o.data = p;
  thaw_http_req_t *req = NULL;
  int rc = thaw_http_start(p->http, &o, &req);
  if (rc != 0) {
    record(p, 0, 0, rc); /* could not even ask: that is a failure too */
    return;
  }
  p->inflight = req;
}

int thaw_probe_start(thaw_probe_t *p) {
  if (!p || p->started || p->freeing)
    return THAW_EINVAL;
  p->started = 1;
  int rc = uv_timer_start(&p->timer, tick, 0, p->interval_ms);
  return rc == 0 ? 0 : THAW_EINVAL;
}

static void on_close(uv_handle_t *h) {
  thaw_probe_t *p = h->data;
  free(p->url);
  free(p->log_url);
  free(p);
}

void thaw_probe_free(thaw_probe_t *p) {
  if (!p || p->freeing)
    return;
  p->freeing = 1;
  uv_timer_stop(&p->timer);
  if (p->inflight)
    thaw_http_cancel(p->inflight); /* on_done runs now and clears it */
  uv_close((uv_handle_t *)&p->timer, on_close);
}
