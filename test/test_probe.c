/* test_probe.c - the registry health gate (webhook/probe.h).
 *
 *   test_probe unit
 *       URL validation, free before start, double start; no server.
 *   test_probe fault URL
 *       against test/fault_http.py at URL: each scenario loads a plan of
 *       answers, runs N probes and compares outcomes, the gate after each
 *       probe, the change callbacks and the server's hit count.
 *   test_probe registry CONFIG PORT PIDFILE LOG
 *       against a real `docker-registry serve CONFIG` that this program
 *       starts, stops (SIGTERM to its PID) and restarts on PORT; the live
 *       PID is kept in PIDFILE so the wrapper can stop it if we die.
 *
 * Asserts count probes and transitions, not wall-clock time. Every loop
 * wait has a deadline. Run by test/test_probe.sh. */
#include <arpa/inet.h>
#include <cjson/cJSON.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <fcntl.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#include "check.h"
#include "error.h"
#include "http.h"
#include "probe.h"

extern char **environ;

#define MAX_PROBES 64

static uv_loop_t *loop;
static thaw_http_t *http;

/* What one run of a probe saw. */
typedef struct run {
  thaw_probe_t *p;
  int nres;
  char outcomes[MAX_PROBES + 1]; /* 'S' success, 'F' failure */
  char ups[MAX_PROBES + 1];      /* gate after each probe: '1' or '0' */
  int nchanges;
  int changes[MAX_PROBES];       /* the new state of each change */
  int model_up, model_fails, model_bad; /* the hysteresis, recomputed */
  int stop_after;                /* free the probe after this many results */
  int free_on_change;            /* free the probe in the change callback */
  int done;
  void (*step)(struct run *);    /* optional, after each result */
} run_t;

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* Runs the loop until *flag or the deadline; returns *flag. */
static int run_until(const int *flag, double seconds) {
  double end = now_s() + seconds;
  while (!*flag && now_s() < end)
    uv_run(loop, UV_RUN_ONCE);
  return *flag;
}

static void on_change(int up, void *data) {
  run_t *r = data;
  if (r->nchanges < MAX_PROBES)
    r->changes[r->nchanges] = up;
  r->nchanges++;
  if (up != thaw_probe_up(r->p)) {
    fprintf(stderr, "change callback %d disagrees with thaw_probe_up\n", up);
    failures++;
  }
  if (r->free_on_change) {
    thaw_probe_free(r->p);
    r->done = 1;
  }
}

static void on_result(int ok, long status, void *data) {
  run_t *r = data;
  (void)status;
  if (r->done) {
    fprintf(stderr, "result after the probe was freed\n");
    failures++;
    return;
  }
  /* The contract: up after one success, down after two failures in a row. */
  if (ok) {
    r->model_up = 1;
    r->model_fails = 0;
  } else if (++r->model_fails >= 2) {
    r->model_up = 0;
  }
  if (thaw_probe_up(r->p) != r->model_up) {
    fprintf(stderr, "probe %d: gate %d, hysteresis says %d\n", r->nres + 1,
            thaw_probe_up(r->p), r->model_up);
    r->model_bad = 1;
  }
  if (r->nres < MAX_PROBES) {
    r->outcomes[r->nres] = ok ? 'S' : 'F';
    r->ups[r->nres] = thaw_probe_up(r->p) ? '1' : '0';
  }
  r->nres++;
  if (r->step)
    r->step(r);
  if (!r->done && r->stop_after && r->nres >= r->stop_after) {
    thaw_probe_free(r->p); /* freeing from the result hook is allowed */
    r->done = 1;
  }
}

/* ---- a blocking-style HTTP call for the fault server's control paths ---- */

typedef struct {
  int done;
  long status;
  char body[4096];
} call_t;

static void call_done(thaw_http_req_t *req, const thaw_http_result_t *res,
                      void *data) {
  (void)req;
  call_t *c = data;
  c->status = res->err ? -1 : res->status;
  snprintf(c->body, sizeof c->body, "%s", res->body ? res->body : "");
  c->done = 1;
}

static long call(const char *method, const char *url, const char *body,
                 call_t *c) {
  memset(c, 0, sizeof *c);
  thaw_http_opts_t o = {0};
  o.method = method;
  o.url = url;
  o.body = body;
  o.body_len = body ? strlen(body) : 0;
  o.timeout_ms = 5000;
  o.on_done = call_done;
  o.data = c;
  if (thaw_http_start(http, &o, NULL) != 0 || !run_until(&c->done, 10))
    return -1;
  return c->status;
}

/* ---- unit: no server ---------------------------------------------------- */

static const struct {
  const char *url;
  int want;
} url_cases[] = {
    {"http://127.0.0.1:5000", 0},
    {"http://127.0.0.1:5000/", 0},
    {"https://reg.example:443", 0},
    {"http://user:secret@reg:5000", 0},
    {"http://reg/prefix", 0},
    {"", THAW_EINVAL},
    {"ftp://reg", THAW_EINVAL},
    {"reg:5000", THAW_EINVAL},
    {"http://", THAW_EINVAL},
    {"http:///v2", THAW_EINVAL},
    {"http://reg:5000/?x=1", THAW_EINVAL},
    {"http://reg#frag", THAW_EINVAL},
    {"http://re g", THAW_EINVAL},
    {"http://reg\n", THAW_EINVAL},
};

static void test_unit(void) {
  for (size_t i = 0; i < sizeof url_cases / sizeof url_cases[0]; i++) {
    thaw_probe_t *p = NULL;
    int rc = thaw_probe_new(loop, http, url_cases[i].url, &p);
    if (rc != url_cases[i].want) {
      fprintf(stderr, "url '%s': got %s want %s\n", url_cases[i].url,
              thaw_err_name(rc), thaw_err_name(url_cases[i].want));
      failures++;
    }
    CHECK(rc == 0 ? p != NULL : p == NULL);
    if (p) {
      CHECK(!thaw_probe_up(p)); /* starts down */
      thaw_probe_free(p);       /* never started */
    }
  }
  char big[4096];
  memset(big, 'a', sizeof big - 1);
  memcpy(big, "http://", 7);
  big[sizeof big - 1] = '\0';
  thaw_probe_t *p = NULL;
  CHECK(thaw_probe_new(loop, http, big, &p) == THAW_EINVAL);
  CHECK(thaw_probe_new(NULL, http, "http://x", &p) == THAW_EINVAL);
  CHECK(thaw_probe_new(loop, NULL, "http://x", &p) == THAW_EINVAL);
  CHECK(thaw_probe_new(loop, http, NULL, &p) == THAW_EINVAL);
  /* Port 1 on loopback refuses: probes fail, the gate stays down. */
  CHECK(thaw_probe_new(loop, http, "http://127.0.0.1:1", &p) == 0);
  run_t r = {.p = p, .stop_after = 3};
  thaw_probe_set_timing(p, 20, 200);
  thaw_probe_set_observer(p, on_change, &r);
  thaw_probe_set_result_hook(p, on_result, &r);
  CHECK(thaw_probe_start(p) == 0);
  CHECK(thaw_probe_start(p) == THAW_EINVAL);
  CHECK(run_until(&r.done, 20));
  CHECK(strcmp(r.outcomes, "FFF") == 0 && r.nchanges == 0 && !r.model_bad);
  thaw_probe_free(NULL);
  CHECK(!thaw_probe_up(NULL));
}

/* ---- fault scenarios ---------------------------------------------------- */

static const struct {
  const char *name;
  const char *plan;
  unsigned interval_ms, timeout_ms;
  const char *outcomes; /* expected, one letter per probe */
  const char *ups;      /* expected gate after each probe */
  int nchanges;
  int max_concurrent;   /* 0: not checked */
  int check_hits;       /* one request per probe (curl may retry a reset) */
} fault_cases[] = {
    {"401 is up", "[{\"status\":401}]", 100, 250, "SSS", "111", 1, 1, 1},
    {"200 then 500: down after two", "[{\"status\":200},{\"status\":500}]",
     100, 250, "SFFF", "1100", 2, 1, 1},
    {"503 from the start: never up", "[{\"status\":503}]", 100, 250, "FFF",
     "000", 0, 1, 1},
    {"404 is a failure", "[{\"status\":200},{\"status\":404}]", 100, 250,
     "SFFF", "1100", 2, 1, 1},
    {"302 is a failure", "[{\"status\":200},{\"status\":302}]", 100, 250,
     "SFF", "110", 2, 1, 1},
    {"slower than the timeout", "[{\"status\":200},{\"delay\":0.8}]", 100,
     250, "SFF", "110", 2, 0, 1},
    {"reset", "[{\"status\":200},{\"reset\":true}]", 100, 250, "SFF",
     "110", 2, 1, 0},
    {"closed without a reply", "[{\"status\":200},{\"close\":true}]", 100,
     250, "SFF", "110", 2, 1, 0},
    {"one failure then success stays up",
     "[{\"status\":200},{\"status\":500},{\"status\":200},{\"status\":502},"
     "{\"status\":401}]",
     100, 250, "SFSFS", "11111", 1, 1, 1},
    {"down then one success is up",
     "[{\"status\":500},{\"status\":500},{\"status\":500},{\"status\":200}]",
     100, 250, "FFFS", "0001", 1, 1, 1},
    /* replies take 4 intervals: ticks are skipped, probes never overlap */
    {"no overlap", "[{\"status\":200,\"delay\":0.2}]", 50, 2000, "SSSS",
     "1111", 1, 1, 1},
};

/* The fault server's counters since the last plan; returns hits or -1. */
static int stats(const char *base, int *max_concurrent, int *active) {
  char url[512];
  call_t c;
  snprintf(url, sizeof url, "%s/_fault/stats", base);
  if (call("GET", url, NULL, &c) != 200)
    return -1;
  cJSON *j = cJSON_Parse(c.body);
  cJSON *h = cJSON_GetObjectItem(j, "hits");
  cJSON *m = cJSON_GetObjectItem(j, "max_concurrent");
  cJSON *a = cJSON_GetObjectItem(j, "active");
  int hits = cJSON_IsNumber(h) ? h->valueint : -1;
  *max_concurrent = cJSON_IsNumber(m) ? m->valueint : -1;
  *active = cJSON_IsNumber(a) ? a->valueint : -1;
  cJSON_Delete(j);
  return hits;
}

static void test_faults(const char *base) {
  char url[512];
  snprintf(url, sizeof url, "%s/_fault/plan", base);
  for (size_t i = 0; i < sizeof fault_cases / sizeof fault_cases[0]; i++) {
    call_t c;
    /* a slow reply of the last case must not count for the next one */
    int maxc = 0, active = 1;
    for (int k = 0; k < 100 && active != 0; k++) {
      stats(base, &maxc, &active);
      if (active)
        usleep(50000);
    }
    CHECK(active == 0);
    CHECK(call("PUT", url, fault_cases[i].plan, &c) == 204);
    size_t n = strlen(fault_cases[i].outcomes);
    thaw_probe_t *p = NULL;
    CHECK(thaw_probe_new(loop, http, base, &p) == 0);
    if (!p)
      return;
    run_t r = {.p = p, .stop_after = (int)n};
    thaw_probe_set_timing(p, fault_cases[i].interval_ms,
                          fault_cases[i].timeout_ms);
    thaw_probe_set_observer(p, on_change, &r);
    thaw_probe_set_result_hook(p, on_result, &r);
    CHECK(!thaw_probe_up(p));
    CHECK(thaw_probe_start(p) == 0);
    int finished = run_until(&r.done, 30);
    int hits = stats(base, &maxc, &active);
    int bad = !finished || strcmp(r.outcomes, fault_cases[i].outcomes) != 0 ||
              strcmp(r.ups, fault_cases[i].ups) != 0 ||
              r.nchanges != fault_cases[i].nchanges || r.model_bad ||
              (fault_cases[i].check_hits && hits != (int)n) ||
              (fault_cases[i].max_concurrent &&
               maxc != fault_cases[i].max_concurrent);
    fprintf(stderr, "%s %s: outcomes %s ups %s changes %d hits %d max %d\n",
            bad ? "FAIL" : "ok  ", fault_cases[i].name, r.outcomes, r.ups,
            r.nchanges, hits, maxc);
    if (bad)
      failures++;
    if (!finished)
      thaw_probe_free(p);
  }

  /* Free from the change callback: no result hook afterwards. */
  call_t c;
  CHECK(call("PUT", url, "[{\"status\":200}]", &c) == 204);
  thaw_probe_t *p = NULL;
  CHECK(thaw_probe_new(loop, http, base, &p) == 0);
  run_t r = {.p = p, .free_on_change = 1};
  thaw_probe_set_timing(p, 100, 250);
  thaw_probe_set_observer(p, on_change, &r);
  thaw_probe_set_result_hook(p, on_result, &r);
  CHECK(thaw_probe_start(p) == 0);
  CHECK(run_until(&r.done, 10));
  CHECK(r.nchanges == 1 && r.changes[0] == 1 && r.nres == 0);

  /* Free while a probe is in flight: it is cancelled, nothing calls back. */
  CHECK(call("PUT", url, "[{\"status\":200,\"delay\":1}]", &c) == 204);
  CHECK(thaw_probe_new(loop, http, base, &p) == 0);
  run_t r2 = {.p = p};
  thaw_probe_set_timing(p, 100, 3000);
  thaw_probe_set_observer(p, on_change, &r2);
  thaw_probe_set_result_hook(p, on_result, &r2);
  CHECK(thaw_probe_start(p) == 0);
  int before = 0, after = 0, maxc, active = 0;
  double end = now_s() + 10;
  while (before < 1 && now_s() < end) /* until the request reached it */
    before = stats(base, &maxc, &active); /* runs the loop meanwhile */
  CHECK(before == 1 && active == 1);
  thaw_probe_free(p);
  r2.done = 1; /* any result from now on is an error (on_result checks) */
  int never = 0;
  run_until(&never, 0.3);
  after = stats(base, &maxc, &active);
  CHECK(after == 1 && r2.nres == 0 && r2.nchanges == 0);
}

/* ---- the real registry -------------------------------------------------- */

static const char *reg_config, *reg_pidfile, *reg_log;
static int reg_port;
static pid_t reg_pid;

static void write_pidfile(pid_t pid) {
  FILE *f = fopen(reg_pidfile, "w");
  if (!f)
    return;
  if (pid > 0)
    fprintf(f, "%d\n", (int)pid);
  fclose(f);
}

/* 1 when GET /v2/ on the port answers 200, with a blocking socket. */
static int registry_answers(void) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0)
    return 0;
  struct timeval tv = {.tv_sec = 1};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(reg_port)};
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  int ok = 0;
  char buf[64] = {0};
  static const char req[] = "GET /v2/ HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n";
  if (connect(fd, (struct sockaddr *)&a, sizeof a) == 0 &&
      write(fd, req, sizeof req - 1) == (ssize_t)(sizeof req - 1) &&
      read(fd, buf, sizeof buf - 1) > 12)
    ok = strncmp(buf, "HTTP/1.", 7) == 0 && strncmp(buf + 9, "200", 3) == 0;
  close(fd);
  return ok;
}

static int registry_start(void) {
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&fa, 1, reg_log, O_WRONLY | O_CREAT | O_APPEND, 0644);
  posix_spawn_file_actions_adddup2(&fa, 1, 2);
  char *argv[] = {"docker-registry", "serve", (char *)reg_config, NULL};
  int rc = posix_spawnp(&reg_pid, "docker-registry", &fa, NULL, argv, environ);
  posix_spawn_file_actions_destroy(&fa);
  if (rc != 0) {
    fprintf(stderr, "spawn docker-registry: %s\n", strerror(rc));
    return -1;
  }
  write_pidfile(reg_pid);
  for (int i = 0; i < 300; i++) { /* 15 s */
    if (registry_answers())
      return 0;
    if (waitpid(reg_pid, NULL, WNOHANG) == reg_pid) {
      fprintf(stderr, "docker-registry exited; see %s\n", reg_log);
      reg_pid = 0;
      write_pidfile(0);
      return -1;
    }
    usleep(50000);
  }
  fprintf(stderr, "docker-registry not answering on port %d\n", reg_port);
  return -1;
}

static void registry_stop(void) {
  if (reg_pid <= 0)
    return;
  kill(reg_pid, SIGTERM);
  waitpid(reg_pid, NULL, 0);
  reg_pid = 0;
  write_pidfile(0);
}

/* Phases: 0 until the first success, then the registry is stopped; 1 until
 * the gate went down, then it is restarted; 2 until the gate is up again. */
static int phase, fails_after_stop, results_at_down, results_at_up;

static void registry_step(run_t *r) {
  const char last = r->outcomes[r->nres - 1];
  if (phase == 0 && last == 'S') {
    CHECK(thaw_probe_up(r->p));
    registry_stop();
    phase = 1;
  } else if (phase == 1) {
    if (last == 'F')
      fails_after_stop++;
    if (!thaw_probe_up(r->p)) {
      results_at_down = r->nres;
      CHECK(registry_start() == 0);
      phase = 2;
    }
  } else if (phase == 2 && last == 'S') {
    results_at_up = r->nres;
    phase = 3;
    thaw_probe_free(r->p);
    r->done = 1;
  }
}

static void test_registry(void) {
  CHECK(registry_start() == 0);
  char base[64];
  snprintf(base, sizeof base, "http://127.0.0.1:%d", reg_port);
  thaw_probe_t *p = NULL;
  CHECK(thaw_probe_new(loop, http, base, &p) == 0);
  run_t r = {.p = p, .step = registry_step};
  thaw_probe_set_timing(p, 100, 100);
  thaw_probe_set_observer(p, on_change, &r);
  thaw_probe_set_result_hook(p, on_result, &r);
  CHECK(!thaw_probe_up(p));
  CHECK(thaw_probe_start(p) == 0);
  int finished = run_until(&r.done, 60);
  fprintf(stderr, "registry: outcomes %s ups %s changes %d phase %d\n",
          r.outcomes, r.ups, r.nchanges, phase);
  CHECK(finished && phase == 3);
  CHECK(!r.model_bad);
  /* up, down, up: exactly three changes, in that order */
  CHECK(r.nchanges == 3 && r.changes[0] == 1 && r.changes[1] == 0 &&
        r.changes[2] == 1);
  /* down after exactly two failed probes, not one */
  CHECK(fails_after_stop == 2);
  CHECK(results_at_down >= 3 && r.ups[results_at_down - 2] == '1' &&
        r.ups[results_at_down - 1] == '0');
  /* up again on the first success after the restart */
  CHECK(results_at_up > results_at_down &&
        r.ups[results_at_up - 1] == '1' &&
        strchr(r.outcomes + results_at_down, 'S') ==
            r.outcomes + results_at_up - 1);
  if (!finished)
    thaw_probe_free(p);
  registry_stop();
}

int main(int argc, char **argv) {
  signal(SIGPIPE, SIG_IGN);
  if (argc < 2) {
    fprintf(stderr, "usage: test_probe unit | fault URL | registry CONFIG PORT PIDFILE LOG\n");
    return 2;
  }
  uv_loop_t l;
  int usage = 0;
  loop = &l;
  CHECK(uv_loop_init(loop) == 0);
  CHECK(thaw_http_new(loop, &http) == 0);
  if (strcmp(argv[1], "unit") == 0) {
    test_unit();
  } else if (strcmp(argv[1], "fault") == 0 && argc == 3) {
    test_faults(argv[2]);
  } else if (strcmp(argv[1], "registry") == 0 && argc == 6) {
    reg_config = argv[2];
    reg_port = (int)strtol(argv[3], NULL, 10);
    reg_pidfile = argv[4];
    reg_log = argv[5];
    test_registry();
  } else {
    fprintf(stderr, "test_probe: bad arguments\n");
    usage = 1;
  }
  thaw_http_free(http);
  uv_run(loop, UV_RUN_DEFAULT);
  CHECK(uv_loop_close(loop) == 0); /* nothing left open */
  if (usage)
    return 2;
  if (failures)
    fprintf(stderr, "test_probe %s: %d failure(s)\n", argv[1], failures);
  return failures != 0;
}
