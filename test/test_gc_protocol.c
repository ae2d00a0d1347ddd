/* test_gc_protocol.c - the controller's side of garbage collection
 * (controller/gc.c) against the real thaw-registry-gc, whose collector is
 * the real docker-registry on an empty storage, started late by a wrapper
 * so that a run lasts. The reconciler is the test's: it counts pauses and
 * resumes and says when it has drained. The paths the controller-level
 * test (test_gc.py) cannot time: a 409 because a run began between the
 * check and the POST, the agent restarted mid-run, a step-down mid-run, no
 * agent at all, and the metrics of each.
 *
 *     test_gc_protocol PATH/thaw-registry-gc [COLLECTOR]
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>
#include <uv.h>

#include "check.h"
#include "error.h"
#include "gc.h"
#include "http.h"
#include "metrics.h"

static uv_loop_t *loop;
static thaw_http_t *http;
static const char *agent_bin, *collector = "docker-registry";
static char dir[256], config[300], slow[300], url[64];
static int port;

/* --- the agent, a child process ------------------------------------------ */

static uv_process_t agent;
static int agent_alive;

static void on_agent_exit(uv_process_t *p, int64_t status, int sig) {
  (void)status;
  (void)sig;
  agent_alive = 0;
  uv_close((uv_handle_t *)p, NULL);
}

/* Blocks until the port accepts a connection (at most 10 s). */
static int wait_listening(void) {
  for (int i = 0; i < 500; i++) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    int ok = connect(fd, (struct sockaddr *)&a, sizeof a) == 0;
    close(fd);
    if (ok)
      return 1;
    usleep(20000);
  }
  return 0;
}

static void agent_start(void) {
  char bind[64];
  snprintf(bind, sizeof bind, "127.0.0.1:%d", port);
  char *args[] = {(char *)agent_bin, (char *)"--config", config,
                  (char *)"--registry-binary", slow, (char *)"--bind-address",
                  bind, (char *)"--log-level", (char *)"warn", NULL};
  uv_stdio_container_t stdio[3] = {{.flags = UV_IGNORE},
                                   {.flags = UV_INHERIT_FD, .data.fd = 2},
                                   {.flags = UV_INHERIT_FD, .data.fd = 2}};
  uv_process_options_t o = {.exit_cb = on_agent_exit, .file = agent_bin,
                            .args = args, .stdio_count = 3, .stdio = stdio};
  int rc = uv_spawn(loop, &agent, &o);
  CHECK(rc == 0);
  agent_alive = rc == 0;
  CHECK(wait_listening());
}

static void agent_kill(int sig) {
  if (agent_alive)
    uv_process_kill(&agent, sig);
}

/* --- running the loop until something holds ------------------------------ */

static int (*until_pred)(void);
static uv_timer_t until_timer;

static void on_until(uv_timer_t *t) {
  (void)t;
  if (until_pred())
    uv_stop(loop);
}

/* Runs the loop until pred() or ms pass (a 10 ms tick keeps it awake);
 * returns pred(). */
static int run_until(int (*pred)(void), uint64_t ms) {
  until_pred = pred;
  uv_update_time(loop);
  uint64_t deadline = uv_now(loop) + ms;
  uv_timer_start(&until_timer, on_until, 10, 10);
  while (!pred() && uv_now(loop) < deadline)
    uv_run(loop, UV_RUN_ONCE);
  uv_timer_stop(&until_timer);
  return pred();
}

static int never(void) { return 0; }

static void run_for(uint64_t ms) { run_until(never, ms); }

/* --- the test's reconciler ------------------------------------------------- */

static struct {
  int pauses, resumes, ready;
  thaw_gc_drained_cb drained;
  void *ctx;
  int hold;                /* keep drained() back until released */
  void (*on_pause)(void);  /* a scenario's hook */
} rec;

static uv_timer_t drain_timer;

static void on_drain_timer(uv_timer_t *t) {
  (void)t;
  thaw_gc_drained_cb d = rec.drained;
  rec.drained = NULL;
  if (d)
    d(rec.ctx);
}

static void release_drained(void) {
  rec.hold = 0;
  uv_timer_start(&drain_timer, on_drain_timer, 0, 0);
}

static void fake_pause(thaw_gc_drained_cb drained, void *ctx, void *data) {
  (void)data;
  rec.pauses++;
  rec.drained = drained;
  rec.ctx = ctx;
  if (rec.on_pause)
    rec.on_pause();
  if (!rec.hold) /* on the loop, as the reconciler does */
    uv_timer_start(&drain_timer, on_drain_timer, 0, 0);
}

static void fake_resume(void *data) {
  (void)data;
  rec.resumes++;
}

static void on_ready(void *data) {
  (void)data;
  rec.ready++;
}

static thaw_metrics_t *metrics;

static thaw_gc_t *gc_make(const char *agent_url, uint64_t interval_ms) {
  memset(&rec, 0, sizeof rec);
  thaw_metrics_free(metrics);
  metrics = thaw_metrics_new();
  thaw_gc_opts_t o = {.agent_url = agent_url,
                      .interval_ms = interval_ms,
                      .metrics = metrics,
                      .pause = fake_pause,
                      .resume = fake_resume};
  thaw_gc_t *gc = NULL;
  CHECK(thaw_gc_new(loop, http, &o, &gc) == 0);
  return gc;
}

/* The value of one series in the exposition, or -1. */
static double series(const char *line_start) {
  char *text;
  size_t len;
  if (thaw_metrics_render(metrics, &text, &len) != 0)
    return -1;
  double v = -1;
  for (char *p = strstr(text, line_start); p; p = strstr(p + 1, line_start))
    if (p == text || p[-1] == '\n') {
      v = strtod(p + strlen(line_start), NULL);
      break;
    }
  free(text);
  return v;
}

/* --- an outside POST /gc (a run the controller did not start) -------------- */

static long rogue_status;

static void on_rogue(thaw_http_req_t *r, const thaw_http_result_t *res,
                     void *data) {
  (void)r;
  (void)data;
  rogue_status = res->err ? -1 : res->status;
  /* our own drain comes only now: the gc's POST meets a run in flight */
  release_drained();
}

static void post_rogue(void) {
  char u[96];
  snprintf(u, sizeof u, "%s/gc", url);
  thaw_http_opts_t o = {.method = "POST", .url = u, .body = "",
                        .on_done = on_rogue};
  CHECK(thaw_http_start(http, &o, NULL) == 0);
}

/* --- predicates ------------------------------------------------------------ */

static thaw_gc_t *cur;

static int is_ready(void) { return rec.ready > 0; }
static int resumed(void) { return rec.resumes > 0; }
static int paused(void) { return rec.pauses > 0; }
static int polling(void) { return rec.pauses > 0 && rec.drained == NULL; }

/* --- scenarios ------------------------------------------------------------- */

static void test_without_agent(void) {
  thaw_gc_t *gc = gc_make(NULL, 1000);
  thaw_gc_set_active(gc, 1, on_ready, NULL);
  CHECK(rec.ready == 1); /* at once */
  CHECK(thaw_gc_running(gc) == 0);
  thaw_gc_request(gc, 100);
  run_for(300);
  CHECK(rec.pauses == 0 && rec.resumes == 0);
  CHECK(series("thaw_gc_runs_total{result=\"success\"} ") == 0);
  CHECK(series("thaw_gc_runs_total{result=\"failure\"} ") == 0);
  thaw_gc_set_active(gc, 0, NULL, NULL);
  thaw_gc_free(gc);
  thaw_gc_free(NULL);
  thaw_gc_request(NULL, 1);
  CHECK(thaw_gc_running(NULL) == 0);
  /* an agent URL needs pause and resume */
  thaw_gc_opts_t bad = {.agent_url = url};
  thaw_gc_t *out = (thaw_gc_t *)1;
  CHECK(thaw_gc_new(loop, http, &bad, &out) == THAW_EINVAL && out == NULL);
}

/* A run of its own: ready, then (interval) check, pause, drained, POST,
 * polls, resume; the S3 case (no --storage-dir): expected bytes count. */
static void test_run(void) {
  thaw_gc_t *gc = cur = gc_make(url, 300);
  thaw_gc_set_active(gc, 1, on_ready, NULL);
  CHECK(thaw_gc_running(gc) == 1); /* waiting for the agent */
  CHECK(run_until(is_ready, 5000));
  CHECK(thaw_gc_running(gc) == 0);
  thaw_gc_request(gc, 12345);
  thaw_gc_request(gc, 5);
  CHECK(run_until(paused, 5000));
  CHECK(thaw_gc_running(gc) == 1);
  CHECK(run_until(resumed, 20000));
  CHECK(rec.pauses == 1 && rec.resumes == 1);
  CHECK(thaw_gc_running(gc) == 0);
  CHECK(series("thaw_gc_runs_total{result=\"success\"} ") == 1);
  CHECK(series("thaw_gc_runs_total{result=\"failure\"} ") == 0);
  CHECK(series("thaw_gc_reclaimed_bytes_total ") == 12350);
  CHECK(series("thaw_gc_last_success_timestamp_seconds ") > 1e9);
  /* nothing requested since: no second run */
  run_for(1000);
  CHECK(rec.pauses == 1);
  thaw_gc_set_active(gc, 0, NULL, NULL);
  thaw_gc_free(gc);
}

/* A run begins elsewhere between the check and the POST: 409, waited out
 * while still paused, then ours. */
static void test_conflict(void) {
  thaw_gc_t *gc = cur = gc_make(url, 0);
  rec.hold = 1;
  rec.on_pause = post_rogue;
  thaw_gc_set_active(gc, 1, on_ready, NULL);
  CHECK(run_until(is_ready, 5000));
  CHECK(run_until(paused, 5000)); /* the run after leadership, due at once */
  CHECK(run_until(resumed, 30000));
  if (rogue_status != 202)
    fprintf(stderr, "rogue POST: %ld\n", rogue_status);
  CHECK(rogue_status == 202);
  CHECK(rec.pauses == 1 && rec.resumes == 1);
  CHECK(series("thaw_gc_runs_total{result=\"success\"} ") == 1);
  CHECK(series("thaw_gc_runs_total{result=\"failure\"} ") == 0);
  thaw_gc_set_active(gc, 0, NULL, NULL);
  thaw_gc_free(gc);
}

/* The agent dies mid-run and another starts on its port: the run is not in
 * its record, a failure; pushes resume; a retry is due. */
static void test_agent_restarted(void) {
  thaw_gc_t *gc = cur = gc_make(url, 500);
  thaw_gc_set_active(gc, 1, on_ready, NULL);
  CHECK(run_until(is_ready, 5000));
  CHECK(run_until(polling, 5000)); /* drained: POST on its way */
  run_for(700);                    /* 202, polls */
  CHECK(rec.resumes == 0);
  agent_kill(SIGKILL);
  run_for(200);
  CHECK(!agent_alive);
  agent_start();
  CHECK(run_until(resumed, 20000));
  CHECK(series("thaw_gc_runs_total{result=\"failure\"} ") == 1);
  CHECK(series("thaw_gc_runs_total{result=\"success\"} ") == 0);
  CHECK(series("thaw_gc_reclaimed_bytes_total ") == 0);
  /* retried after min(interval, 5 min): 0.5 s */
  CHECK(rec.pauses == 1);
  rec.resumes = 0;
  CHECK(run_until(resumed, 20000));
  CHECK(rec.pauses == 2);
  CHECK(series("thaw_gc_runs_total{result=\"success\"} ") == 1);
  thaw_gc_set_active(gc, 0, NULL, NULL);
  thaw_gc_free(gc);
}

/* Leadership lost mid-run: the pause it made is resumed at once, nothing
 * more happens; the run on the agent ends by itself. */
static void test_step_down(void) {
  thaw_gc_t *gc = cur = gc_make(url, 0);
  thaw_gc_set_active(gc, 1, on_ready, NULL);
  CHECK(run_until(is_ready, 5000));
  CHECK(run_until(polling, 5000));
  run_for(300);
  CHECK(thaw_gc_running(gc) == 1);
  thaw_gc_set_active(gc, 0, NULL, NULL);
  CHECK(rec.resumes == 1);
  CHECK(thaw_gc_running(gc) == 0);
  run_for(2500);
  CHECK(rec.pauses == 1 && rec.resumes == 1);
  CHECK(series("thaw_gc_runs_total{result=\"success\"} ") == 0);
  CHECK(series("thaw_gc_runs_total{result=\"failure\"} ") == 0);
  /* a new leadership waits for that run, then is ready */
  rec.ready = 0;
  thaw_gc_set_active(gc, 1, on_ready, NULL);
  CHECK(run_until(is_ready, 10000));
  thaw_gc_set_active(gc, 0, NULL, NULL);
  thaw_gc_free(gc);
}

/* --- setup ----------------------------------------------------------------- */

static int free_port(void) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {.sin_family = AF_INET};
  inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
  socklen_t n = sizeof a;
  bind(fd, (struct sockaddr *)&a, sizeof a);
  getsockname(fd, (struct sockaddr *)&a, &n);
  close(fd);
  return ntohs(a.sin_port);
}

static void write_file(const char *path, const char *text, mode_t mode) {
  FILE *f = fopen(path, "w");
  CHECK(f != NULL);
  if (f) {
    fputs(text, f);
    fclose(f);
  }
  chmod(path, mode);
}

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: test_gc_protocol PATH/thaw-registry-gc "
                    "[COLLECTOR]\n");
    return 2;
  }
  signal(SIGPIPE, SIG_IGN);
  agent_bin = argv[1];
  if (argc > 2)
    collector = argv[2];
  snprintf(dir, sizeof dir, "%s/thaw-gc-protocol.XXXXXX",
           getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
  CHECK(mkdtemp(dir) != NULL);
  char storage[300], text[1024];
  snprintf(storage, sizeof storage, "%s/storage", dir);
  mkdir(storage, 0755);
  snprintf(config, sizeof config, "%s/config.yml", dir);
  snprintf(text, sizeof text,
           "version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: %s\n"
           "  delete:\n    enabled: true\n",
           storage);
  write_file(config, text, 0644);
  /* The real collector, 1.5 s late: a run lasts long enough to act in. */
  snprintf(slow, sizeof slow, "%s/slow-registry", dir);
  snprintf(text, sizeof text, "#!/bin/sh\nsleep 1.5\nexec %s \"$@\"\n",
           collector);
  write_file(slow, text, 0755);

  uv_loop_t l;
  uv_loop_init(&l);
  loop = &l;
  uv_timer_init(loop, &until_timer);
  uv_timer_init(loop, &drain_timer);
  CHECK(thaw_http_new(loop, &http) == 0);
  port = free_port();
  snprintf(url, sizeof url, "http://127.0.0.1:%d", port);
  agent_start();

  test_without_agent();
  test_run();
  test_conflict();
  test_agent_restarted();
  test_step_down();

  agent_kill(SIGTERM);
  for (int i = 0; i < 500 && agent_alive; i++)
    uv_run(loop, UV_RUN_NOWAIT), usleep(10000);
  CHECK(!agent_alive);
  thaw_http_free(http);
  uv_close((uv_handle_t *)&until_timer, NULL);
  uv_close((uv_handle_t *)&drain_timer, NULL);
  uv_run(loop, UV_RUN_DEFAULT);
  CHECK(uv_loop_close(loop) == 0);
  thaw_metrics_free(metrics);
  snprintf(text, sizeof text, "rm -rf '%s'", dir);
  CHECK(system(text) == 0);
  return 0;
}
