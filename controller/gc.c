/* gc.c - registry garbage collection, the controller's side (gc.h): when to
 * run, the pause around a run, and the agent's API (POST/GET /gc of
 * thaw-registry-gc) through common/http/http.c. One timer and at most one request
 * at a time. */
#include "gc.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "error.h"
#include "log.h"

#define POLL_MS 500
#define WAIT_UNREACHABLE_MS 30000 /* a new leader gives up waiting */
/* Mid-run, pushes stay paused this long without an answer; longer than
 * the agent's --orphan-timeout (30 s), which stops a run nobody polls. */
#define RUN_UNREACHABLE_MS 60000
#define RETRY_MAX_MS (5 * 60 * 1000) /* after a failure */
#define POLL_TIMEOUT_MS 5000
#define POST_TIMEOUT_MS 10000
#define BODY_MAX (64 << 10)

enum state {
  S_OFF,        /* not leading */
  S_WAIT_AGENT, /* leading; waiting until the agent has no run in flight */
  S_IDLE,       /* leading */
  S_CHECKING,   /* a run is due: is the agent there? (not paused yet) */
  S_PAUSING,    /* pause asked; waiting for drained */
  S_POSTING,    /* POST /gc in flight */
  S_BUSY,       /* the agent answered 409: polling until that run ends */
  S_POLLING,    /* our run in flight */
};

struct thaw_gc {
  uv_loop_t *loop;
  thaw_http_t *http;
  char *url; /* the agent's /gc; NULL: no GC */
  uint64_t interval_ms;
  void (*pause)(thaw_gc_drained_cb drained, void *ctx, void *data);
  void (*resume)(void *data);
  void *data;

  enum state st;
  int paused;                 /* pause() called, resume() not yet */
  int pending;                /* a run is wanted */
  int64_t pending_bytes;      /* expected by the requests not yet run */
  int64_t run_bytes;          /* expected by the run in flight */
  uint64_t next_ms;           /* uv_now when a run may start */
  uint64_t unreachable_since; /* 0: the last answer was fine */
  unsigned long long run_id;
  thaw_http_req_t *req;
  uv_timer_t timer;
  void (*ready)(void *data);
  void *ready_data;
  int freeing;

  thaw_metric_t *m_runs, *m_bytes, *m_last_success;
};

/* What GET /gc said; strings point into the parsed document. */
typedef struct {
  int running;
  int have_last;
  unsigned long long last_id;
  int last_ok;
  long long bytes_before, bytes_after; /* -1: not measured */
  const char *message;
} agent_status_t;

static void post(thaw_gc_t *gc);
static void poll_now(thaw_gc_t *gc);
static void schedule(thaw_gc_t *gc);
static void pause_pushes(thaw_gc_t *gc);

/* --- small parts ------------------------------------------------------- */

static void cancel_req(thaw_gc_t *gc) {
  thaw_http_req_t *r = gc->req;
  gc->req = NULL;
  if (r)
    thaw_http_cancel(r); /* its on_done sees THAW_ECANCELED and returns */
}

static void do_resume(thaw_gc_t *gc) {
  if (!gc->paused)
    return;
  gc->paused = 0;
  gc->resume(gc->data);
}

static void on_poll_timer(uv_timer_t *t) { poll_now(t->data); }

static void poll_later(thaw_gc_t *gc) {
  uv_timer_start(&gc->timer, on_poll_timer, POLL_MS, 0);
}

static long long json_count(const cJSON *o, const char *key) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
  return cJSON_IsNumber(v) && v->valuedouble >= 0 ? (long long)v->valuedouble
                                                  : -1;
}

/* Reads GET /gc's answer; 0, or THAW_EPARSE for anything else. */
static int parse_status(cJSON *doc, agent_status_t *s) {
  memset(s, 0, sizeof *s);
  s->bytes_before = s->bytes_after = -1;
  s->message = "";
  const cJSON *running = cJSON_GetObjectItemCaseSensitive(doc, "running");
  if (!cJSON_IsBool(running))
    return THAW_EPARSE;
  s->running = cJSON_IsTrue(running);
  const cJSON *last = cJSON_GetObjectItemCaseSensitive(doc, "last");
  if (cJSON_IsObject(last)) {
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(last, "id");
    const cJSON *res = cJSON_GetObjectItemCaseSensitive(last, "result");
    const cJSON *msg = cJSON_GetObjectItemCaseSensitive(last, "message");
    if (!cJSON_IsNumber(id) || !cJSON_IsString(res))
      return THAW_EPARSE;
    s->have_last = 1;
    s->last_id = (unsigned long long)id->valuedouble;
    s->last_ok = strcmp(res->valuestring, "success") == 0;
    s->bytes_before = json_count(last, "bytesBefore");
    s->bytes_after = json_count(last, "bytesAfter");
    if (cJSON_IsString(msg))
      s->message = msg->valuestring;
  }
  return 0;
}

/* --- the end of a run -------------------------------------------------- */

static void end_run(thaw_gc_t *gc, int ok, long long measured,
                    const char *message) {
  int64_t reclaimed = measured >= 0 ? measured : ok ? gc->run_bytes : 0;
  int was_paused = gc->paused;
  do_resume(gc);
  gc->st = S_IDLE;
  const char *res[] = {ok ? "success" : "failure"};
  thaw_metric_inc(gc->m_runs, res);
  if (reclaimed > 0)
    thaw_metric_add(gc->m_bytes, NULL, (double)reclaimed);
  if (ok)
    thaw_metric_set(gc->m_last_success, NULL, (double)time(NULL));
  char id[24], bytes[24];
  snprintf(id, sizeof id, "%llu", gc->run_id);
  snprintf(bytes, sizeof bytes, "%lld", (long long)reclaimed);
  thaw_log(ok ? THAW_LOG_INFO : THAW_LOG_WARN,
           ok           ? "garbage collection done: pushes resumed"
           : was_paused ? "garbage collection failed: pushes resumed"
                        : "garbage collection failed: nothing was paused",
           "run", id, "reclaimedBytes", bytes, "bytesFrom",
           measured >= 0 ? "agent" : "expected", "message", message,
           (char *)NULL);
  uint64_t wait = gc->interval_ms;
  if (!ok) { /* try again, sooner */
    if (wait > RETRY_MAX_MS)
      wait = RETRY_MAX_MS;
    gc->pending = 1;
    gc->pending_bytes += gc->run_bytes;
  }
  gc->run_bytes = 0;
  gc->next_ms = uv_now(gc->loop) + wait;
  schedule(gc);
}

static void become_ready(thaw_gc_t *gc) {
  gc->st = S_IDLE;
  void (*ready)(void *) = gc->ready;
  gc->ready = NULL;
  if (ready)
    ready(gc->ready_data);
  if (gc->st == S_IDLE) /* ready() may have stepped down */
    schedule(gc);
}

/* --- the agent's answers ----------------------------------------------- */

/* No usable answer: poll on, or give up after the state's bound. */
static void unreachable(thaw_gc_t *gc, const char *why) {
  uint64_t now = uv_now(gc->loop);
  if (gc->unreachable_since == 0) {
    gc->unreachable_since = now;
    thaw_warn("garbage collection agent: no usable answer", "error", why);
  }
  uint64_t limit =
      gc->st == S_WAIT_AGENT ? WAIT_UNREACHABLE_MS : RUN_UNREACHABLE_MS;
  if (now - gc->unreachable_since < limit) {
    poll_later(gc);
    return;
  }
  if (gc->st == S_WAIT_AGENT) {
    thaw_warn("garbage collection agent unreachable: pushing without "
              "knowing whether a run is in flight",
              "error", why);
    become_ready(gc);
  } else {
    char msg[300];
    snprintf(msg, sizeof msg, "the agent did not answer for %d s: %s",
             RUN_UNREACHABLE_MS / 1000, why);
    end_run(gc, 0, -1, msg);
  }
}

static void on_poll_done(thaw_http_req_t *req, const thaw_http_result_t *res,
                         void *data) {
  thaw_gc_t *gc = data;
  if (gc->req == req)
    gc->req = NULL;
  if (res->err == THAW_ECANCELED)
    return;
  char why[160];
  if (res->err != 0 || res->status != 200) {
    if (res->err)
      snprintf(why, sizeof why, "GET /gc: %s",
               *res->message ? res->message : thaw_strerror(res->err));
    else
      snprintf(why, sizeof why, "GET /gc: HTTP %ld", res->status);
    if (gc->st == S_CHECKING) /* nothing paused yet: fail, retry later */
      end_run(gc, 0, -1, why);
    else
      unreachable(gc, why);
    return;
  }
  cJSON *doc = cJSON_ParseWithLength(res->body, res->body_len);
  agent_status_t s;
  if (doc == NULL || parse_status(doc, &s) != 0) {
    cJSON_Delete(doc);
    snprintf(why, sizeof why, "GET /gc: not the agent's JSON");
    if (gc->st == S_CHECKING)
      end_run(gc, 0, -1, why);
    else
      unreachable(gc, why);
    return;
  }
  if (gc->st == S_CHECKING) { /* the agent answers: now pause (a run of
                                 someone else's in flight is waited out
                                 after the POST's 409, paused) */
    cJSON_Delete(doc);
    pause_pushes(gc);
    return;
  }
  gc->unreachable_since = 0;
  if (s.running) {
    cJSON_Delete(doc);
    poll_later(gc);
    return;
  }
  switch (gc->st) {
  case S_WAIT_AGENT:
    become_ready(gc);
    break;
  case S_BUSY: /* that run is over: ours now (still paused) */
    gc->st = S_POSTING;
    post(gc);
    break;
  case S_POLLING:
    if (s.have_last && s.last_id == gc->run_id) {
      long long freed = -1;
      if (s.bytes_before >= 0 && s.bytes_after >= 0)
        freed = s.bytes_before > s.bytes_after ? s.bytes_before - s.bytes_after
                                               : 0;
      end_run(gc, s.last_ok, freed, s.message);
    } else {
      end_run(gc, 0, -1,
              gc->run_id == 0
                  ? "POST /gc got no answer; no run is in flight now"
                  : "the run is not in the agent's record (restarted?)");
    }
    break;
  default:
    break;
  }
  cJSON_Delete(doc);
}

static void poll_now(thaw_gc_t *gc) {
  thaw_http_opts_t o = {.url = gc->url,
                        .connect_timeout_ms = 3000,
                        .timeout_ms = POLL_TIMEOUT_MS,
                        .max_body = BODY_MAX,
                        .on_done = on_poll_done,
                        .data = gc};
  int rc = thaw_http_start(gc->http, &o, &gc->req);
  if (rc != 0) {
    gc->req = NULL;
    if (gc->st == S_CHECKING)
      end_run(gc, 0, -1, thaw_strerror(rc));
    else
      unreachable(gc, thaw_strerror(rc));
  }
}

static void on_post_done(thaw_http_req_t *req, const thaw_http_result_t *res,
                         void *data) {
  thaw_gc_t *gc = data;
  if (gc->req == req)
    gc->req = NULL;
  if (res->err == THAW_ECANCELED)
    return;
  char msg[300];
  if (res->err == 0 && res->status == 202) {
    cJSON *doc = cJSON_ParseWithLength(res->body, res->body_len);
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(doc, "id");
    if (cJSON_IsNumber(id)) {
      gc->run_id = (unsigned long long)id->valuedouble;
      gc->st = S_POLLING;
      gc->unreachable_since = 0;
      char ids[24];
      snprintf(ids, sizeof ids, "%llu", gc->run_id);
      thaw_info("garbage collection started", "run", ids);
      poll_later(gc);
    } else {
      end_run(gc, 0, -1, "POST /gc: 202 without a run id");
    }
    cJSON_Delete(doc);
  } else if (res->err == 0 && res->status == 409) {
    thaw_info("garbage collection: the agent has a run in flight; waiting "
              "for it (pushes stay paused)");
    gc->st = S_BUSY;
    gc->unreachable_since = 0;
    poll_later(gc);
  } else if (res->err == THAW_ETIMEDOUT) {
    /* It may have started a run: wait (paused) until none is in flight. */
    gc->run_id = 0; /* never an id the agent gives */
    gc->st = S_POLLING;
    poll_later(gc);
  } else {
    if (res->err)
      snprintf(msg, sizeof msg, "POST /gc: %s",
               *res->message ? res->message : thaw_strerror(res->err));
    else
      snprintf(msg, sizeof msg, "POST /gc: HTTP %ld", res->status);
    end_run(gc, 0, -1, msg); /* nothing started: safe to resume now */
  }
}

static void post(thaw_gc_t *gc) {
  thaw_http_opts_t o = {.method = "POST",
                        .url = gc->url,
                        .body = "",
                        .body_len = 0,
                        .connect_timeout_ms = 3000,
                        .timeout_ms = POST_TIMEOUT_MS,
                        .max_body = BODY_MAX,
                        .on_done = on_post_done,
                        .data = gc};
  int rc = thaw_http_start(gc->http, &o, &gc->req);
  if (rc != 0) {
    gc->req = NULL;
    end_run(gc, 0, -1, thaw_strerror(rc));
  }
}

/* --- starting runs ----------------------------------------------------- */

static void on_drained(void *ctx) {
  thaw_gc_t *gc = ctx;
  if (gc->st != S_PAUSING)
    return; /* stepped down meanwhile */
  gc->st = S_POSTING;
  post(gc);
}

static void pause_pushes(thaw_gc_t *gc) {
  gc->st = S_PAUSING;
  gc->paused = 1;
  thaw_info("garbage collection due: pausing pushes until none is in flight");
  gc->pause(on_drained, gc, gc->data);
}

/* An agent that does not answer costs no pause (and no drain of the warms
 * in flight): the run fails at once and is retried later. */
static void begin_run(thaw_gc_t *gc) {
  gc->st = S_CHECKING;
  gc->pending = 0;
  gc->run_bytes = gc->pending_bytes;
  gc->pending_bytes = 0;
  poll_now(gc);
}

static void on_due(uv_timer_t *t) { schedule(t->data); }

static void schedule(thaw_gc_t *gc) {
  if (gc->st != S_IDLE || !gc->pending)
    return;
  uint64_t now = uv_now(gc->loop);
  if (now >= gc->next_ms)
    begin_run(gc);
  else
    uv_timer_start(&gc->timer, on_due, gc->next_ms - now, 0);
}

/* --- API --------------------------------------------------------------- */

int thaw_gc_new(uv_loop_t *loop, thaw_http_t *http, const thaw_gc_opts_t *o,
                thaw_gc_t **out) {
  *out = NULL;
  int on = o->agent_url && *o->agent_url;
  if (on && (http == NULL || o->pause == NULL || o->resume == NULL))
    return THAW_EINVAL;
  thaw_gc_t *gc = calloc(1, sizeof *gc);
  if (gc == NULL)
    return THAW_ENOMEM;
  if (on) {
    size_t n = strlen(o->agent_url);
    while (n > 0 && o->agent_url[n - 1] == '/')
      n--;
    gc->url = malloc(n + sizeof "/gc");
    if (gc->url == NULL) {
      free(gc);
      return THAW_ENOMEM;
    }
    memcpy(gc->url, o->agent_url, n);
    memcpy(gc->url + n, "/gc", sizeof "/gc");
  }
  gc->loop = loop;
  gc->http = http;
  gc->interval_ms = o->interval_ms;
  gc->pause = o->pause;
  gc->resume = o->resume;
  gc->data = o->data;
  if (o->metrics) {
    static const char *const result[] = {"result"};
    gc->m_runs = thaw_metrics_counter(
        o->metrics, "thaw_gc_runs_total",
        "Registry garbage collections, by result.", 1, result);
    const char *ok[] = {"success"}, *bad[] = {"failure"};
    thaw_metric_child(gc->m_runs, ok);
    thaw_metric_child(gc->m_runs, bad);
    gc->m_bytes = thaw_metrics_counter(
        o->metrics, "thaw_gc_reclaimed_bytes_total",
        "Bytes garbage collections freed (measured by the agent, else "
        "expected from the deleted images).",
        0, NULL);
    thaw_metric_add(gc->m_bytes, NULL, 0);
    gc->m_last_success = thaw_metrics_gauge(
        o->metrics, "thaw_gc_last_success_timestamp_seconds",
        "When the last successful garbage collection ended (0: never).", 0,
        NULL);
    thaw_metric_set(gc->m_last_success, NULL, 0);
  }
  uv_timer_init(loop, &gc->timer);
  gc->timer.data = gc;
  *out = gc;
  return 0;
}

void thaw_gc_set_active(thaw_gc_t *gc, int leading, void (*ready)(void *data),
                        void *data) {
  if (gc == NULL || gc->url == NULL) {
    if (leading && ready)
      ready(data);
    return;
  }
  cancel_req(gc);
  uv_timer_stop(&gc->timer);
  gc->ready = NULL;
  if (!leading) {
    if (gc->st != S_OFF && gc->st != S_IDLE && gc->st != S_WAIT_AGENT)
      thaw_info("not leading: garbage collection abandoned (a run in flight "
                "on the agent ends by itself)");
    do_resume(gc);
    gc->st = S_OFF;
    return;
  }
  do_resume(gc); /* (a set_active(1) twice) */
  gc->st = S_WAIT_AGENT;
  gc->ready = ready;
  gc->ready_data = data;
  gc->unreachable_since = 0;
  gc->pending = 1; /* what a former leader deleted and did not collect */
  gc->next_ms = uv_now(gc->loop) + gc->interval_ms;
  poll_now(gc);
}

void thaw_gc_request(thaw_gc_t *gc, int64_t expected_bytes) {
  if (gc == NULL || gc->url == NULL)
    return;
  gc->pending = 1;
  if (expected_bytes > 0)
    gc->pending_bytes += expected_bytes;
  if (gc->st == S_IDLE && !uv_is_active((uv_handle_t *)&gc->timer))
    schedule(gc);
}

int thaw_gc_running(const thaw_gc_t *gc) {
  return gc != NULL && (gc->paused || gc->st == S_WAIT_AGENT);
}

static void on_timer_closed(uv_handle_t *h) {
  thaw_gc_t *gc = h->data;
  free(gc->url);
  free(gc);
}

void thaw_gc_free(thaw_gc_t *gc) {
  if (gc == NULL || gc->freeing)
    return;
  gc->freeing = 1;
  cancel_req(gc);
  uv_timer_stop(&gc->timer);
  uv_close((uv_handle_t *)&gc->timer, on_timer_closed);
}
