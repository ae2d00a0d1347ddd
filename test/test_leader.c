/* test_leader.c - leader election against the emulator, with short timings:
 * acquire, follow, take over after a kill, after a release, step down on API
 * failures, one winner of a race, and clean frees with requests in flight.
 * A 50 ms timer and every callback check that no two candidates lead. */
#include "kube_test.h"

#include "leader.h"
#include "metrics.h"

#define NS "default"
#define LEASE_MS 4000
#define RENEW_MS 2000
#define RETRY_MS 400
#define MAXC 8

typedef struct {
  thaw_kube_t *k;
  thaw_leader_t *l;
  char id[32];
  int starts, stops, released;
} cand_t;

static cand_t *cands[MAXC];
static uv_timer_t guard;
static int guard_checks;

static void check_one_leader(void) {
  int n = 0;
  for (int i = 0; i < MAXC; i++)
    n += cands[i] && cands[i]->l && thaw_leader_is_leader(cands[i]->l);
  if (n > 1) {
    fprintf(stderr, "%d leaders at once\n", n);
    exit(1);
  }
}

static void on_guard(uv_timer_t *t) {
  (void)t;
  guard_checks++;
  check_one_leader();
}

static void on_started(thaw_leader_t *l, void *data) {
  cand_t *c = data;
  CHECK(c->l == l && c->starts == c->stops); /* alternate */
  CHECK(thaw_leader_is_leader(l));
  c->starts++;
  check_one_leader();
}

static void on_stopped(thaw_leader_t *l, void *data) {
  cand_t *c = data;
  CHECK(c->starts == c->stops + 1);
  CHECK(!thaw_leader_is_leader(l));
  c->stops++;
  check_one_leader();
}

static void on_released(thaw_leader_t *l, void *data) {
  (void)l;
  ((cand_t *)data)->released = 1;
}

static void cand_new(cand_t *c, const char *lease, const char *id,
                     thaw_metrics_t *m) {
  memset(c, 0, sizeof *c);
  snprintf(c->id, sizeof c->id, "%s", id);
  thaw_kube_config_t cfg = emu_config();
  CHECK(thaw_kube_new(loop, &cfg, &c->k) == 0);
  thaw_kube_config_free(&cfg);
  thaw_leader_opts_t o = {.namespace = NS, .name = lease, .identity = id,
                          .timings = {LEASE_MS, RENEW_MS, RETRY_MS},
                          .on_started_leading = on_started,
                          .on_stopped_leading = on_stopped,
                          .data = c, .metrics = m};
  CHECK(thaw_leader_new(loop, c->k, &o, &c->l) == 0);
  for (int i = 0; i < MAXC; i++)
    if (!cands[i]) {
      cands[i] = c;
      break;
    }
}

/* Frees without release, like a killed process. */
static void cand_kill(cand_t *c) {
  thaw_leader_free(c->l);
  c->l = NULL;
  thaw_kube_free(c->k);
  c->k = NULL;
  for (int i = 0; i < MAXC; i++)
    if (cands[i] == c)
      cands[i] = NULL;
}

static int is_leader(const cand_t *c) { return c->l && thaw_leader_is_leader(c->l); }

/* Runs until c leads; returns the ms it took. */
static uint64_t wait_leader(const cand_t *c, uint64_t ms) {
  uint64_t start = uv_now(loop), end = start + ms;
  while (!is_leader(c)) {
    uv_run(loop, UV_RUN_ONCE);
    if (uv_now(loop) > end) {
      fprintf(stderr, "%s not leader after %llu ms\n", c->id,
              (unsigned long long)ms);
      exit(1);
    }
  }
  return uv_now(loop) - start;
}

static cJSON *get_lease(const char *name) {
  res_t r = {0};
  thaw_kube_opts_t o = {.namespace = NS, .name = name};
  CHECK(thaw_kube_get(kc, &thaw_kube_leases, &o, on_res, &r) == 0);
  wait_res(&r);
  CHECK(r.err == 0);
  return r.body;
}

static const char *spec_s(const cJSON *lease, const char *k) {
  const cJSON *spec = cJSON_GetObjectItem(lease, "spec");
  const char *s = cJSON_GetStringValue(cJSON_GetObjectItem(spec, k));
  return s ? s : "";
}

static long spec_n(const cJSON *lease, const char *k) {
  const cJSON *spec = cJSON_GetObjectItem(lease, "spec");
  return (long)cJSON_GetNumberValue(cJSON_GetObjectItem(spec, k));
}

static cand_t a, b, c, d;

/* a leads, the Lease names it, the gauge says 1; b follows while a renews;
 * a is killed and b takes over after the lease duration. */
static void test_acquire_follow_kill(void) {
  thaw_metrics_t *m = thaw_metrics_new();
  CHECK(m);
  cand_new(&a, "lead-1", "cand-a", m);
  CHECK(thaw_leader_start(a.l) == 0);
  CHECK(thaw_leader_start(a.l) == THAW_EINVAL);
  wait_leader(&a, 3000);
  cJSON *lease = get_lease("lead-1");
  CHECK(strcmp(spec_s(lease, "holderIdentity"), "cand-a") == 0);
  CHECK(spec_n(lease, "leaseDurationSeconds") == LEASE_MS / 1000);
  CHECK(spec_n(lease, "leaseTransitions") == 0);
  CHECK(strlen(spec_s(lease, "renewTime")) == 27); /* ...:SS.uuuuuuZ */
  cJSON_Delete(lease);
  char *text;
  size_t len;
  CHECK(thaw_metrics_render(m, &text, &len) == 0);
  CHECK(strstr(text, "\nthaw_leader 1\n"));
  free(text);

  cand_new(&b, "lead-1", "cand-b", NULL);
  CHECK(thaw_leader_start(b.l) == 0);
  run_idle(LEASE_MS + 1000);
  CHECK(is_leader(&a) && !is_leader(&b) && a.starts == 1 && b.starts == 0);
  lease = get_lease("lead-1");
  CHECK(strcmp(spec_s(lease, "holderIdentity"), "cand-a") == 0);
  cJSON_Delete(lease);

  cand_kill(&a);
  CHECK(thaw_metrics_render(m, &text, &len) == 0);
  CHECK(strstr(text, "\nthaw_leader 0\n"));
  free(text);
  thaw_metrics_free(m);
  uint64_t took = wait_leader(&b, LEASE_MS + 4 * RETRY_MS + 1000);
  fprintf(stderr, "takeover after kill: %llu ms\n", (unsigned long long)took);
  CHECK(took >= LEASE_MS - 2 * RETRY_MS);
  lease = get_lease("lead-1");
  CHECK(strcmp(spec_s(lease, "holderIdentity"), "cand-b") == 0);
  CHECK(spec_n(lease, "leaseTransitions") == 1);
  cJSON_Delete(lease);
}

/* b releases: on_stopped at once, and c takes over within ~2 retries. */
static void test_release(void) {
  cand_new(&c, "lead-1", "cand-c", NULL);
  CHECK(thaw_leader_start(c.l) == 0);
  run_idle(3 * RETRY_MS);
  CHECK(is_leader(&b) && !is_leader(&c));
  /* 409s on PUT, as when a renewal abandoned by release lands first: the
   * release retries from a fresh GET. */
  CHECK(control("POST", "fail",
                "{\"count\":2,\"code\":409,\"methods\":[\"PUT\"],"
                "\"pathPrefix\":\"/apis/coordination.k8s.io\"}") == 200);
  thaw_leader_release(b.l, on_released, &b);
  CHECK(!is_leader(&b) && b.stops == 1);
  wait_flag(&b.released, 3000);
  CHECK(control("POST", "fail", "{\"count\":0}") == 200);
  uint64_t took = wait_leader(&c, 3000);
  fprintf(stderr, "takeover after release: %llu ms\n", (unsigned long long)took);
  CHECK(took <= 3 * RETRY_MS + 300);
  cJSON *lease = get_lease("lead-1");
  CHECK(strcmp(spec_s(lease, "holderIdentity"), "cand-c") == 0);
  CHECK(spec_n(lease, "leaseTransitions") == 2);
  cJSON_Delete(lease);
  cand_kill(&b);
}

/* Lease requests fail for longer than the renew deadline: c steps down
 * within it; afterwards exactly one of c, d leads again. */
static void test_api_failures(void) {
  cand_new(&d, "lead-1", "cand-d", NULL);
  CHECK(thaw_leader_start(d.l) == 0);
  run_idle(3 * RETRY_MS);
  CHECK(is_leader(&c) && !is_leader(&d));
  CHECK(control("POST", "fail",
                "{\"count\":60,\"code\":500,"
                "\"pathPrefix\":\"/apis/coordination.k8s.io\"}") == 200);
  uint64_t start = uv_now(loop);
  wait_count(&c.stops, 1, RENEW_MS + 2 * RETRY_MS + 500);
  uint64_t took = uv_now(loop) - start;
  fprintf(stderr, "stepped down after %llu ms of failures\n",
          (unsigned long long)took);
  CHECK(took <= RENEW_MS + 2 * RETRY_MS + 300);
  CHECK(!is_leader(&c) && !is_leader(&d));
  uint64_t end = uv_now(loop) + 15000;
  while (!is_leader(&c) && !is_leader(&d)) {
    uv_run(loop, UV_RUN_ONCE);
    CHECK(uv_now(loop) < end);
  }
  CHECK(control("POST", "fail", "{\"count\":0}") == 200);
  run_idle(LEASE_MS);
  CHECK(is_leader(&c) + is_leader(&d) == 1);
  cand_kill(&c);
  cand_kill(&d);
}

/* Two candidates start together on a new Lease: one create wins (the other
 * gets AlreadyExists or Conflict) and exactly one leads. */
static void test_race(void) {
  for (int round = 0; round < 5; round++) {
    char lease[32];
    snprintf(lease, sizeof lease, "race-%d", round);
    cand_new(&a, lease, "race-a", NULL);
    cand_new(&b, lease, "race-b", NULL);
    CHECK(thaw_leader_start(a.l) == 0 && thaw_leader_start(b.l) == 0);
    run_idle(LEASE_MS + 500);
    CHECK(is_leader(&a) + is_leader(&b) == 1);
    CHECK(a.starts + b.starts == 1 && a.stops + b.stops == 0);
    cand_kill(&a);
    cand_kill(&b);
  }
}

/* Frees and releases with requests in flight; ASan checks the rest. */
static void test_free_in_flight(void) {
  for (int i = 0; i < 10; i++) {
    cand_new(&a, "lead-free", "free-a", NULL);
    CHECK(thaw_leader_start(a.l) == 0);
    for (int j = 0; j < i; j++)
      uv_run(loop, UV_RUN_NOWAIT);
    if (i % 2) {
      thaw_leader_release(a.l, on_released, &a);
      thaw_leader_release(a.l, on_released, &a); /* no-op */
    }
    cand_kill(&a); /* leader first, then client, as a daemon exits */
  }
  /* Leading, release in flight, then freed: done never runs. */
  cand_new(&a, "lead-free", "free-a", NULL);
  CHECK(thaw_leader_start(a.l) == 0);
  wait_leader(&a, 3000);
  thaw_leader_release(a.l, on_released, &a); /* PUT queued, not answered */
  cand_kill(&a);
  run_idle(200);
  CHECK(!a.released);
  /* The client freed under a live elector's request. */
  cand_new(&a, "lead-free", "free-b", NULL);
  CHECK(thaw_leader_start(a.l) == 0);
  uv_run(loop, UV_RUN_NOWAIT);
  thaw_kube_free(a.k);
  a.k = NULL;
  thaw_leader_free(a.l);
  a.l = NULL;
  for (int i = 0; i < MAXC; i++)
    if (cands[i] == &a)
      cands[i] = NULL;
}

static void test_bad_opts(void) {
  thaw_leader_t *l = NULL;
  thaw_leader_opts_t o = {.namespace = NS,
                          .timings = {1000, 1000, 200}};
  CHECK(thaw_leader_new(loop, kc, &o, &l) == THAW_EINVAL);
  o.namespace = NULL;
  o.timings.lease_ms = 0;
  CHECK(thaw_leader_new(loop, kc, &o, &l) == THAW_EINVAL);
  char id[8];
  CHECK(thaw_leader_default_identity(id, sizeof id) == THAW_EINVAL);
  char big[300];
  CHECK(thaw_leader_default_identity(big, sizeof big) == 0 && strchr(big, '_'));
  thaw_leader_free(NULL);
}

int main(void) {
  setup();
  uv_timer_init(loop, &guard);
  uv_timer_start(&guard, on_guard, 50, 50);
  test_bad_opts();
  test_acquire_follow_kill();
  test_release();
  test_api_failures();
  test_race();
  test_free_in_flight();
  CHECK(guard_checks > 50);
  uv_close((uv_handle_t *)&guard, NULL);
  teardown();
  printf("leader: ok\n");
  return 0;
}
