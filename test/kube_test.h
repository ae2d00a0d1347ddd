/* kube_test.h - helpers shared by the emulator-backed kube client tests.
 *
 * Owner: the http + kube client module. Header-only (static functions), so
 * each test stays one executable. Every wait runs the loop with a deadline
 * and fails the test instead of hanging. */
#ifndef THAW_KUBE_TEST_H
#define THAW_KUBE_TEST_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <uv.h>

#include "error.h"
#include "http.h"
#include "kube.h"
#include "kubeconfig.h"

#define CHECK(c)                                                               \
  do {                                                                         \
    if (!(c)) {                                                                \
      fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #c);    \
      exit(1);                                                                 \
    }                                                                          \
  } while (0)

#define CHECK_ERR(r, want)                                                     \
  do {                                                                         \
    if ((r)->err != (want)) {                                                  \
      fprintf(stderr, "%s:%d: err %s (HTTP %ld, %s: %s), want %s\n", __FILE__, \
              __LINE__, thaw_err_name((r)->err), (r)->status, (r)->reason,     \
              (r)->message, thaw_err_name(want));                              \
      exit(1);                                                                 \
    }                                                                          \
  } while (0)

static uv_loop_t *loop;
static thaw_kube_t *kc;
static thaw_http_t *hc; /* for the emulator's control endpoint */
static uv_timer_t ticker;
static unsigned ticks;

typedef struct {
  int done, err;
  long status, retry_after;
  char reason[64], message[512];
  cJSON *body;
} res_t;

static __attribute__((unused)) void on_res(const thaw_kube_result_t *r, void *d) {
  res_t *o = d;
  CHECK(!o->done); /* exactly once */
  o->done = 1;
  o->err = r->err;
  o->status = r->http_status;
  o->retry_after = r->retry_after;
  CHECK(r->reason && r->message);
  snprintf(o->reason, sizeof o->reason, "%s", r->reason);
  snprintf(o->message, sizeof o->message, "%s", r->message);
  o->body = thaw_kube_result_take_body(r);
}

static __attribute__((unused)) void res_free(res_t *r) {
  cJSON_Delete(r->body);
  memset(r, 0, sizeof *r);
}

static __attribute__((unused)) void wait_flag(const int *flag, uint64_t ms) {
  uint64_t end = uv_now(loop) + ms;
  while (!*flag) {
    uv_run(loop, UV_RUN_ONCE);
    if (uv_now(loop) > end) {
      fprintf(stderr, "timed out after %llu ms\n", (unsigned long long)ms);
      exit(1);
    }
  }
}

static __attribute__((unused)) void wait_count(const int *n, int want, uint64_t ms) {
  uint64_t end = uv_now(loop) + ms;
  while (*n < want) {
    uv_run(loop, UV_RUN_ONCE);
    CHECK(uv_now(loop) <= end);
  }
}

static __attribute__((unused)) void wait_res(res_t *r) { wait_flag(&r->done, 30000); }

/* Runs the loop for about ms milliseconds. */
static __attribute__((unused)) void run_idle(uint64_t ms) {
  uint64_t end = uv_now(loop) + ms;
  while (uv_now(loop) < end)
    uv_run(loop, UV_RUN_ONCE);
}

static __attribute__((unused)) void sleep_ms(long ms) { run_idle((uint64_t)ms); }

static __attribute__((unused)) char *read_text(const char *path) {
  FILE *f = fopen(path, "r");
  CHECK(f);
  char *b = calloc(1, 1 << 16);
  size_t n = fread(b, 1, (1 << 16) - 1, f);
  fclose(f);
  b[n] = '\0';
  return b;
}

static __attribute__((unused)) const char *env(const char *name) {
  const char *v = getenv(name);
  if (!v || !*v) {
    fprintf(stderr, "%s unset: run under test/with-emulator.sh\n", name);
    exit(1);
  }
  return v;
}

/* The emulator's address, CA and the suite's token. */
static __attribute__((unused)) thaw_kube_config_t emu_config(void) {
  thaw_kube_config_t c = {0};
  c.server = strdup(env("THAW_EMU_URL"));
  c.ca_file = strdup(env("THAW_EMU_CA"));
  c.token = strdup(env("THAW_EMU_TOKEN"));
  return c;
}

typedef struct {
  int done;
  long status;
} ctl_t;

static __attribute__((unused)) void on_ctl(thaw_http_req_t *req, const thaw_http_result_t *res,
                   void *data) {
  (void)req;
  ctl_t *c = data;
  c->done = 1;
  c->status = res->err ? -1 : res->status;
  if (res->err || res->status != 200)
    fprintf(stderr, "control: %s HTTP %ld %.*s\n", res->message, res->status,
            (int)(res->body_len > 300 ? 300 : res->body_len),
            res->body ? res->body : "");
}

/* Calls the emulator's unauthenticated control endpoint; returns the status. */
static __attribute__((unused)) long control(const char *method, const char *what, const char *json) {
  char url[512];
  snprintf(url, sizeof url, "%s/_emulator/%s", env("THAW_EMU_URL"), what);
  const char *hdrs[] = {"Content-Type: application/json", NULL};
  ctl_t c = {0};
  thaw_http_opts_t o = {.method = method, .url = url, .headers = hdrs,
                        .ca_file = env("THAW_EMU_CA"), .timeout_ms = 10000,
                        .on_done = on_ctl, .data = &c};
  if (json) {
    o.body = json;
    o.body_len = strlen(json);
  }
  CHECK(thaw_http_start(hc, &o, NULL) == 0);
  wait_flag(&c.done, 15000);
  return c.status;
}

#define WMAX 64
typedef struct {
  thaw_kube_watch_t *w;
  int n;
  char types[WMAX][16], names[WMAX][64], rvs[WMAX][32];
  long codes[WMAX];
  int ended, end_err;
  long end_status;
  char end_msg[256];
  int stop_after, in_stop, end_inside_stop;
  thaw_kube_t *free_client; /* freed from inside the first event */
} watch_t;

static __attribute__((unused)) void on_event(const char *type, const cJSON *obj, void *data) {
  watch_t *w = data;
  CHECK(!w->ended);
  if (w->n < WMAX) {
    const cJSON *m = cJSON_GetObjectItemCaseSensitive(obj, "metadata");
    const char *name = cJSON_GetStringValue(cJSON_GetObjectItem(m, "name"));
    const char *rv = cJSON_GetStringValue(cJSON_GetObjectItem(m, "resourceVersion"));
    const cJSON *code = cJSON_GetObjectItem(obj, "code");
    snprintf(w->types[w->n], sizeof w->types[0], "%s", type);
    snprintf(w->names[w->n], sizeof w->names[0], "%s", name ? name : "");
    snprintf(w->rvs[w->n], sizeof w->rvs[0], "%s", rv ? rv : "");
    w->codes[w->n] = cJSON_IsNumber(code) ? (long)code->valuedouble : 0;
  }
  w->n++;
  if (w->stop_after && w->n >= w->stop_after) {
    w->in_stop = 1;
    thaw_kube_watch_stop(w->w);
    w->in_stop = 0;
  }
  if (w->free_client) {
    thaw_kube_t *k = w->free_client;
    w->free_client = NULL;
    thaw_kube_free(k);
  }
}

static __attribute__((unused)) void on_end(const thaw_kube_result_t *res, void *data) {
  watch_t *w = data;
  CHECK(!w->ended); /* exactly once */
  w->ended = 1;
  w->end_err = res->err;
  w->end_status = res->http_status;
  w->end_inside_stop = w->in_stop;
  snprintf(w->end_msg, sizeof w->end_msg, "%s", res->message);
  w->w = NULL;
}

static __attribute__((unused)) void watch_clear(watch_t *w) { memset(w, 0, sizeof *w); }

static __attribute__((unused)) void on_tick(uv_timer_t *t) {
  (void)t;
  ticks++;
}

static __attribute__((unused)) void setup(void) {
  static uv_loop_t l;
  loop = &l;
  CHECK(uv_loop_init(loop) == 0);
  thaw_kube_config_t cfg = emu_config();
  CHECK(thaw_kube_new(loop, &cfg, &kc) == 0);
  thaw_kube_config_free(&cfg);
  CHECK(thaw_http_new(loop, &hc) == 0);
  uv_timer_init(loop, &ticker);
  uv_timer_start(&ticker, on_tick, 50, 50);
}

/* Frees everything; the loop must then close with nothing left on it. */
static __attribute__((unused)) void teardown(void) {
  thaw_kube_free(kc);
  thaw_http_free(hc);
  uv_close((uv_handle_t *)&ticker, NULL);
  uv_run(loop, UV_RUN_DEFAULT);
  CHECK(uv_loop_close(loop) == 0);
}

#endif
