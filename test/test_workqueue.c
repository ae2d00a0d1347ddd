/* test_workqueue.c - behaviour of common/base/workqueue: rate-limiter arithmetic
 * (pure, injected clock), de-duplication, dirty re-queue, one worker per key
 * under a randomized workload, backoff and bucket delays on a real loop,
 * add_after, shutdown and free. Timing asserts are lower bounds (a noisy
 * machine only makes things slower) or comparisons of very different
 * delays. Every test ends with uv_loop_close() == 0. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "error.h"
#include "workqueue.h"

#include "check.h"

#define CHECK_EQ_U(a, b)                                                       \
  do {                                                                         \
    unsigned long long a_ = (a), b_ = (b);                                     \
    if (a_ != b_) {                                                            \
      fprintf(stderr, "%s:%d: %s == %llu, expected %llu\n", __FILE__,         \
              __LINE__, #a, a_, b_);                                           \
      failures++;                                                              \
    }                                                                          \
  } while (0)

static void close_loop(uv_loop_t *loop) {
  CHECK(uv_run(loop, UV_RUN_DEFAULT) == 0);
  CHECK(uv_loop_close(loop) == 0);
}

/* ---- pure arithmetic ---- */

static void test_backoff_math(void) {
  const uint64_t max = 1000 * 1000;
  CHECK_EQ_U(thaw_backoff_delay_ms(5, max, 0), 5);
  CHECK_EQ_U(thaw_backoff_delay_ms(5, max, 1), 10);
  CHECK_EQ_U(thaw_backoff_delay_ms(5, max, 2), 20);
  CHECK_EQ_U(thaw_backoff_delay_ms(5, max, 10), 5120);
  CHECK_EQ_U(thaw_backoff_delay_ms(5, max, 17), 655360);
  CHECK_EQ_U(thaw_backoff_delay_ms(5, max, 18), max); /* 1310720 capped */
  CHECK_EQ_U(thaw_backoff_delay_ms(5, max, 63), max);
  CHECK_EQ_U(thaw_backoff_delay_ms(5, max, 64), max);
  CHECK_EQ_U(thaw_backoff_delay_ms(5, max, 4000000000u), max);
  CHECK_EQ_U(thaw_backoff_delay_ms(UINT64_MAX, UINT64_MAX, 1), UINT64_MAX);
  CHECK_EQ_U(thaw_backoff_delay_ms(7, 5, 0), 5);
  /* Strictly doubling until the cap. */
  uint64_t prev = 0;
  for (unsigned f = 0; f < 30; f++) {
    uint64_t d = thaw_backoff_delay_ms(5, max, f);
    CHECK(d == max || d == 2 * prev || f == 0);
    prev = d;
  }
}

static void test_bucket_math(void) {
  thaw_token_bucket_t b;
  /* 300 reservations at once at 100 qps, burst 10: the first 10 are free,
   * then 10 ms apart; the last waits (300 - 10) / 100 s. */
  thaw_token_bucket_init(&b, 100, 10, 1000);
  uint64_t prev = 0, last = 0;
  for (int i = 0; i < 300; i++) {
    uint64_t d = thaw_token_bucket_reserve(&b, 1000);
    if (i < 10)
      CHECK_EQ_U(d, 0);
    else
      CHECK_EQ_U(d, (uint64_t)(i - 9) * 10);
    CHECK(d >= prev);
    prev = last = d;
  }
  CHECK_EQ_U(last, 2900);

  /* Refill: qps 10, burst 1. */
  thaw_token_bucket_init(&b, 10, 1, 0);
  CHECK_EQ_U(thaw_token_bucket_reserve(&b, 0), 0);
  CHECK_EQ_U(thaw_token_bucket_reserve(&b, 0), 100);
  CHECK_EQ_U(thaw_token_bucket_reserve(&b, 0), 200);
  /* At 250 ms: -2 + 2.5 = 0.5 tokens; one more leaves -0.5 -> 50 ms. */
  CHECK_EQ_U(thaw_token_bucket_reserve(&b, 250), 50);
  /* Long idle refills only up to burst. */
  CHECK_EQ_U(thaw_token_bucket_reserve(&b, 100000), 0);
  CHECK_EQ_U(thaw_token_bucket_reserve(&b, 100000), 100);
  /* A clock going backwards does not refill. */
  CHECK_EQ_U(thaw_token_bucket_reserve(&b, 50000), 200);
}

/* ---- helpers for loop tests ---- */

#define MAXKEYS 64

typedef struct {
  thaw_workqueue_t *q;
  uv_loop_t *loop;
  char order[32][16];
  int norder;
  int count[MAXKEYS];
  uint64_t start[32];
  int mode; /* test-specific */
  thaw_workqueue_token_t *held;
  int drained;
} rec_t;

static int key_index(const char *key) {
  return (int)strtol(key + 1, NULL, 10) % MAXKEYS;
}

/* Records the key and finishes with success at once. */
static void process_record(thaw_workqueue_t *q, const char *key,
                           thaw_workqueue_token_t *tok, void *data) {
  rec_t *r = data;
  if (r->norder < 32) {
    snprintf(r->order[r->norder], sizeof(r->order[0]), "%s", key);
    r->start[r->norder] = uv_now(r->loop);
    r->norder++;
  }
  r->count[key_index(key)]++;
  CHECK(strcmp(thaw_workqueue_token_key(tok), key) == 0);
  CHECK(thaw_workqueue_done(q, tok, THAW_WQ_SUCCESS, 0) == 0);
}

static void test_dedup_and_fifo(void) {
  uv_loop_t loop;
  CHECK(uv_loop_init(&loop) == 0);
  rec_t r = {.loop = &loop};
  thaw_workqueue_t *q;
  CHECK(thaw_workqueue_new(&q, &loop, NULL, process_record, &r) == 0);
  for (int i = 0; i < 1000; i++) {
    CHECK(thaw_workqueue_add(q, "k3") == 0);
    CHECK(thaw_workqueue_add(q, "k1") == 0);
    if (i % 2)
      CHECK(thaw_workqueue_add(q, "k2") == 0);
  }
  thaw_workqueue_stats_t st;
  thaw_workqueue_stats(q, &st);
  CHECK_EQ_U(st.depth, 3);
  CHECK_EQ_U(st.adds_total, 3);
  CHECK_EQ_U(r.norder, 0); /* never called from inside add() */
  uv_run(&loop, UV_RUN_DEFAULT);
  CHECK_EQ_U(r.norder, 3);
  CHECK(strcmp(r.order[0], "k3") == 0);
  CHECK(strcmp(r.order[1], "k1") == 0);
  CHECK(strcmp(r.order[2], "k2") == 0);
  CHECK_EQ_U(r.count[1] + r.count[2] + r.count[3], 3);
  thaw_workqueue_stats(q, &st);
  CHECK_EQ_U(st.depth, 0);
  CHECK_EQ_U(st.active, 0);

  /* Bad arguments. */
  char long_key[THAW_WORKQUEUE_KEY_MAX + 2];
  memset(long_key, 'a', sizeof(long_key) - 1);
  long_key[sizeof(long_key) - 1] = '\0';
  CHECK(thaw_workqueue_add(q, NULL) == THAW_EINVAL);
  CHECK(thaw_workqueue_add(q, "") == THAW_EINVAL);
  CHECK(thaw_workqueue_add(q, long_key) == THAW_EINVAL);
  long_key[THAW_WORKQUEUE_KEY_MAX] = '\0';
  CHECK(thaw_workqueue_add(q, long_key) == 0);
  CHECK(thaw_workqueue_add(NULL, "k1") == THAW_EINVAL);
  CHECK(thaw_workqueue_done(q, NULL, THAW_WQ_SUCCESS, 0) == THAW_EINVAL);
  thaw_workqueue_t *q2 = q;
  CHECK(thaw_workqueue_new(&q2, &loop, NULL, NULL, NULL) == THAW_EINVAL);
  CHECK(q2 == NULL);
  uv_run(&loop, UV_RUN_DEFAULT);
  thaw_workqueue_free(q);
  thaw_workqueue_free(NULL);
  close_loop(&loop);
}

/* ---- dirty re-queue ---- */

typedef struct {
  uv_timer_t timer;
  thaw_workqueue_t *q;
  thaw_workqueue_token_t *tok;
  int runs;
  int in_flight;
  uint64_t done_at;
  uint64_t second_start;
  int overlap;
} dirty_t;

static void dirty_finish(uv_timer_t *t) {
  dirty_t *d = t->data;
  d->in_flight = 0;
  d->done_at = uv_now(t->loop);
  CHECK(thaw_workqueue_done(d->q, d->tok, THAW_WQ_SUCCESS, 0) == 0);
}

static void process_dirty(thaw_workqueue_t *q, const char *key,
                          thaw_workqueue_token_t *tok, void *data) {
  dirty_t *d = data;
  (void)key;
  if (d->in_flight)
    d->overlap = 1;
  d->in_flight = 1;
  d->runs++;
  d->tok = tok;
  if (d->runs == 1) {
    /* Added again while processing: marked dirty, not queued. */
    for (int i = 0; i < 3; i++)
      CHECK(thaw_workqueue_add(q, "k") == 0);
    thaw_workqueue_stats_t st;
    thaw_workqueue_stats(q, &st);
    CHECK_EQ_U(st.depth, 0);
    CHECK_EQ_U(st.active, 1);
    uv_timer_start(&d->timer, dirty_finish, 20, 0);
  } else {
    d->second_start = uv_now(d->timer.loop);
    d->in_flight = 0;
    CHECK(thaw_workqueue_done(q, tok, THAW_WQ_SUCCESS, 0) == 0);
  }
}

static void test_dirty_requeue(void) {
  uv_loop_t loop;
  CHECK(uv_loop_init(&loop) == 0);
  dirty_t d = {0};
  uv_timer_init(&loop, &d.timer);
  d.timer.data = &d;
  thaw_workqueue_opts_t o = {.concurrency = 4};
  CHECK(thaw_workqueue_new(&d.q, &loop, &o, process_dirty, &d) == 0);
  CHECK(thaw_workqueue_add(d.q, "k") == 0);
  uv_run(&loop, UV_RUN_DEFAULT);
  CHECK_EQ_U(d.runs, 2);
  CHECK(!d.overlap);
  CHECK(d.second_start >= d.done_at);
  thaw_workqueue_free(d.q);
  uv_close((uv_handle_t *)&d.timer, NULL);
  close_loop(&loop);
}

/* ---- randomized workload: never two workers on one key, no lost add ---- */

#define RKEYS 50
#define RCONC 4
#define ROPS 10000

typedef struct rnd rnd_t;
typedef struct {
  uv_timer_t timer;
  rnd_t *r;
  thaw_workqueue_token_t *tok;
  int key;
  int busy;
} slot_t;

struct rnd {
  thaw_workqueue_t *q;
  uv_loop_t *loop;
  uv_timer_t driver;
  slot_t slots[RCONC];
  unsigned seed;
  int ops;
  uint64_t tick; /* logical clock of events */
  uint64_t last_add[RKEYS];
  uint64_t last_start[RKEYS];
  int processing[RKEYS];
  int active, max_active;
  int violations;
  long starts;
};

static unsigned rnd_next(rnd_t *r, unsigned n) {
  r->seed = r->seed * 1103515245u + 12345u;
  return (r->seed >> 8) % n;
}

static void finish(rnd_t *r, thaw_workqueue_token_t *tok, int k) {
  r->processing[k] = 0;
  r->active--;
  unsigned p = rnd_next(r, 10);
  thaw_workqueue_result_t res = p < 7   ? THAW_WQ_SUCCESS
                                : p < 9 ? THAW_WQ_RETRY
                                        : THAW_WQ_RETRY_AFTER;
  if (res != THAW_WQ_SUCCESS)
    r->last_add[k] = ++r->tick; /* a retry is an add that must happen */
  CHECK(thaw_workqueue_done(r->q, tok, res, rnd_next(r, 3)) == 0);
}

static void slot_fire(uv_timer_t *t) {
  slot_t *s = t->data;
  s->busy = 0;
  finish(s->r, s->tok, s->key);
}

static void process_rnd(thaw_workqueue_t *q, const char *key,
                        thaw_workqueue_token_t *tok, void *data) {
  rnd_t *r = data;
  (void)q;
  int k = key_index(key);
  if (r->processing[k])
    r->violations++;
  r->processing[k] = 1;
  r->last_start[k] = ++r->tick;
  r->starts++;
  if (++r->active > r->max_active)
    r->max_active = r->active;
  if (r->active > RCONC)
    r->violations++;
  if (rnd_next(r, 10) < 3) {
    finish(r, tok, k); /* done from inside the callback */
    return;
  }
  for (int i = 0; i < RCONC; i++) {
    slot_t *s = &r->slots[i];
    if (s->busy)
      continue;
    s->busy = 1;
    s->tok = tok;
    s->key = k;
    uv_timer_start(&s->timer, slot_fire, rnd_next(r, 3), 0);
    return;
  }
  r->violations++; /* more in flight than slots: concurrency exceeded */
  finish(r, tok, k);
}

static void driver_tick(uv_timer_t *t) {
  rnd_t *r = t->data;
  char key[16];
  for (int i = 0; i < 20 && r->ops < ROPS; i++, r->ops++) {
    int k = (int)rnd_next(r, RKEYS);
    snprintf(key, sizeof(key), "k%d", k);
    unsigned op = rnd_next(r, 20);
    if (op < 12) {
      CHECK(thaw_workqueue_add(r->q, key) == 0);
    } else if (op < 16) {
      CHECK(thaw_workqueue_add_after(r->q, key, rnd_next(r, 5)) == 0);
    } else if (op < 19) {
      CHECK(thaw_workqueue_add_rate_limited(r->q, key) == 0);
    } else {
      thaw_workqueue_forget(r->q, key);
      continue; /* not an add */
    }
    r->last_add[k] = ++r->tick;
  }
  if (r->ops >= ROPS)
    uv_timer_stop(t);
}

static void test_randomized(void) {
  uv_loop_t loop;
  CHECK(uv_loop_init(&loop) == 0);
  rnd_t *r = calloc(1, sizeof(*r));
  r->loop = &loop;
  r->seed = 12345;
  thaw_workqueue_opts_t o = {.concurrency = RCONC,
                             .backoff_base_ms = 1,
                             .backoff_max_ms = 8,
                             .qps = -1};
  CHECK(thaw_workqueue_new(&r->q, &loop, &o, process_rnd, r) == 0);
  for (int i = 0; i < RCONC; i++) {
    uv_timer_init(&loop, &r->slots[i].timer);
    r->slots[i].timer.data = &r->slots[i];
    r->slots[i].r = r;
  }
  uv_timer_init(&loop, &r->driver);
  r->driver.data = r;
  uv_timer_start(&r->driver, driver_tick, 0, 1);
  uv_run(&loop, UV_RUN_DEFAULT); /* returns once nothing is pending */

  CHECK_EQ_U(r->ops, ROPS);
  CHECK_EQ_U(r->violations, 0);
  CHECK(r->max_active >= 2); /* the workload did overlap keys */
  CHECK(r->max_active <= RCONC);
  CHECK_EQ_U(r->active, 0);
  int lost = 0;
  for (int k = 0; k < RKEYS; k++)
    if (r->last_add[k] && r->last_start[k] < r->last_add[k])
      lost++;
  CHECK_EQ_U(lost, 0);
  thaw_workqueue_stats_t st;
  thaw_workqueue_stats(r->q, &st);
  CHECK_EQ_U(st.depth + st.active + st.waiting, 0);
  CHECK(st.adds_total == (uint64_t)r->starts);
  fprintf(stderr, "randomized: %d ops, %ld starts, max %d in flight\n",
          r->ops, r->starts, r->max_active);
  thaw_workqueue_free(r->q);
  for (int i = 0; i < RCONC; i++)
    uv_close((uv_handle_t *)&r->slots[i].timer, NULL);
  uv_close((uv_handle_t *)&r->driver, NULL);
  close_loop(&loop);
  free(r);
}

/* ---- backoff on the loop, reset by forget ---- */

typedef struct {
  uv_loop_t *loop;
  uint64_t at[8];
  unsigned requeues[8];
  int n;
} bo_t;

static void process_backoff(thaw_workqueue_t *q, const char *key,
                            thaw_workqueue_token_t *tok, void *data) {
  bo_t *b = data;
  b->at[b->n] = uv_now(b->loop);
  b->requeues[b->n] = thaw_workqueue_num_requeues(q, key);
  b->n++;
  if (b->n == 5)
    thaw_workqueue_forget(q, key); /* the next retry starts from base */
  thaw_workqueue_done(q, tok, b->n < 6 ? THAW_WQ_RETRY : THAW_WQ_SUCCESS, 0);
}

static void test_backoff_on_loop(void) {
  uv_loop_t loop;
  CHECK(uv_loop_init(&loop) == 0);
  bo_t b = {.loop = &loop};
  thaw_workqueue_t *q;
  thaw_workqueue_opts_t o = {.backoff_base_ms = 20, .qps = -1};
  CHECK(thaw_workqueue_new(&q, &loop, &o, process_backoff, &b) == 0);
  CHECK(thaw_workqueue_add(q, "x") == 0);
  uv_run(&loop, UV_RUN_DEFAULT);
  CHECK_EQ_U(b.n, 6);
  for (int i = 0; i < 5; i++)
    CHECK_EQ_U(b.requeues[i], (unsigned)i);
  CHECK_EQ_U(b.requeues[5], 1); /* forgotten, then one retry */
  uint64_t gap[5];
  for (int i = 0; i < 5; i++)
    gap[i] = b.at[i + 1] - b.at[i];
  CHECK(gap[0] >= 20);
  CHECK(gap[1] >= 40);
  CHECK(gap[2] >= 80);
  CHECK(gap[3] >= 160);
  CHECK(gap[4] >= 20);
  CHECK(gap[4] < gap[3]); /* reset by forget: ~20 ms against >= 160 ms */
  CHECK_EQ_U(thaw_workqueue_num_requeues(q, "x"), 0); /* SUCCESS forgets */
  thaw_workqueue_stats_t st;
  thaw_workqueue_stats(q, &st);
  CHECK_EQ_U(st.retries_total, 5);
  fprintf(stderr, "backoff gaps: %llu %llu %llu %llu, after forget %llu\n",
          (unsigned long long)gap[0], (unsigned long long)gap[1],
          (unsigned long long)gap[2], (unsigned long long)gap[3],
          (unsigned long long)gap[4]);
  thaw_workqueue_free(q);
  close_loop(&loop);
}

/* ---- the global bucket limits a burst of distinct keys ---- */

typedef struct {
  uv_loop_t *loop;
  int n;
  uint64_t last;
} burst_t;

static void process_burst(thaw_workqueue_t *q, const char *key,
                          thaw_workqueue_token_t *tok, void *data) {
  burst_t *b = data;
  (void)key;
  b->n++;
  b->last = uv_now(b->loop);
  thaw_workqueue_done(q, tok, THAW_WQ_SUCCESS, 0);
}

static void test_bucket_on_loop(void) {
  uv_loop_t loop;
  CHECK(uv_loop_init(&loop) == 0);
  burst_t b = {.loop = &loop};
  thaw_workqueue_t *q;
  thaw_workqueue_opts_t o = {
      .concurrency = 8, .backoff_base_ms = 1, .qps = 100, .burst = 10};
  CHECK(thaw_workqueue_new(&q, &loop, &o, process_burst, &b) == 0);
  uv_update_time(&loop);
  uint64_t t0 = uv_now(&loop);
  char key[16];
  for (int i = 0; i < 30; i++) {
    snprintf(key, sizeof(key), "k%d", i);
    CHECK(thaw_workqueue_add_rate_limited(q, key) == 0);
    CHECK_EQ_U(thaw_workqueue_num_requeues(q, key), 1);
  }
  uv_run(&loop, UV_RUN_DEFAULT);
  CHECK_EQ_U(b.n, 30);
  /* The 30th token is 20 past the burst: 200 ms at 100 qps. */
  CHECK(b.last - t0 >= 200);
  thaw_workqueue_free(q);
  close_loop(&loop);
}

/* ---- add_after and RETRY_AFTER ---- */

static void test_add_after(void) {
  uv_loop_t loop;
  CHECK(uv_loop_init(&loop) == 0);
  rec_t r = {.loop = &loop};
  thaw_workqueue_t *q;
  CHECK(thaw_workqueue_new(&q, &loop, NULL, process_record, &r) == 0);
  uv_update_time(&loop);
  uint64_t t0 = uv_now(&loop);
  CHECK(thaw_workqueue_add_after(q, "k1", 60) == 0);
  CHECK(thaw_workqueue_add_after(q, "k2", 10) == 0);
  CHECK(thaw_workqueue_add(q, "k3") == 0);
  CHECK(thaw_workqueue_add_after(q, "k4", 3000) == 0);
  CHECK(thaw_workqueue_add_after(q, "k4", 30) == 0);   /* earlier wins */
  CHECK(thaw_workqueue_add_after(q, "k4", 5000) == 0); /* later ignored */
  thaw_workqueue_stats_t st;
  thaw_workqueue_stats(q, &st);
  CHECK_EQ_U(st.waiting, 3);
  CHECK_EQ_U(st.depth, 1);
  uv_run(&loop, UV_RUN_DEFAULT);
  uv_update_time(&loop);
  CHECK_EQ_U(r.norder, 4);
  CHECK(strcmp(r.order[0], "k3") == 0);
  CHECK(strcmp(r.order[1], "k2") == 0 && r.start[1] - t0 >= 10);
  CHECK(strcmp(r.order[2], "k4") == 0 && r.start[2] - t0 >= 30);
  CHECK(strcmp(r.order[3], "k1") == 0 && r.start[3] - t0 >= 60);
  CHECK(uv_now(&loop) - t0 < 3000); /* the 3000/5000 ms times were dropped */
  CHECK_EQ_U(r.count[4], 1);
  thaw_workqueue_free(q);
  close_loop(&loop);
}

typedef struct {
  uv_loop_t *loop;
  uint64_t at[2];
  int n;
} ra_t;

static void process_retry_after(thaw_workqueue_t *q, const char *key,
                                thaw_workqueue_token_t *tok, void *data) {
  ra_t *r = data;
  r->at[r->n++] = uv_now(r->loop);
  CHECK(thaw_workqueue_done(q, tok,
                            r->n == 1 ? THAW_WQ_RETRY_AFTER : THAW_WQ_SUCCESS,
                            80) == 0);
  if (r->n == 1)
    CHECK_EQ_U(thaw_workqueue_num_requeues(q, key), 1);
}

static void test_retry_after(void) {
  uv_loop_t loop;
  CHECK(uv_loop_init(&loop) == 0);
  ra_t r = {.loop = &loop};
  thaw_workqueue_t *q;
  CHECK(thaw_workqueue_new(&q, &loop, NULL, process_retry_after, &r) == 0);
  CHECK(thaw_workqueue_add(q, "k1") == 0);
  uv_run(&loop, UV_RUN_DEFAULT);
  CHECK_EQ_U(r.n, 2);
  CHECK(r.at[1] - r.at[0] >= 80);
  CHECK_EQ_U(thaw_workqueue_num_requeues(q, "k1"), 0);
  thaw_workqueue_free(q);
  close_loop(&loop);
}

/* ---- shutdown and free ---- */

static void process_never(thaw_workqueue_t *q, const char *key,
                          thaw_workqueue_token_t *tok, void *data) {
  (void)q, (void)key, (void)tok;
  (*(int *)data)++;
}

static void test_free_with_pending(void) {
  uv_loop_t loop;
  CHECK(uv_loop_init(&loop) == 0);
  int called = 0;
  thaw_workqueue_t *q;
  CHECK(thaw_workqueue_new(&q, &loop, NULL, process_never, &called) == 0);
  CHECK(thaw_workqueue_add_after(q, "k1", 100000) == 0);
  CHECK(thaw_workqueue_add_rate_limited(q, "k2") == 0);
  CHECK(thaw_workqueue_add(q, "k3") == 0);
  thaw_workqueue_free(q);
  uv_update_time(&loop);
  uint64_t t0 = uv_now(&loop);
  CHECK(uv_run(&loop, UV_RUN_DEFAULT) == 0);
  uv_update_time(&loop);
  CHECK(uv_now(&loop) - t0 < 50000); /* did not wait for the timer */
  CHECK_EQ_U(called, 0);
  CHECK(uv_loop_close(&loop) == 0);
}

/* Shutdown with one key in flight: drained comes after its done(). */
typedef struct {
  thaw_workqueue_t *q;
  thaw_workqueue_token_t *tok;
  uv_timer_t timer;
  int step;
  int drained;
  int processed;
} sd_t;

static void sd_drained(thaw_workqueue_t *q, void *data) {
  sd_t *s = data;
  (void)q;
  s->drained++;
}

static void process_hold(thaw_workqueue_t *q, const char *key,
                         thaw_workqueue_token_t *tok, void *data) {
  sd_t *s = data;
  (void)q, (void)key;
  s->processed++;
  s->tok = tok;
}

static void sd_tick(uv_timer_t *t) {
  sd_t *s = t->data;
  if (s->step == 0 && s->processed == 0) {
    /* The loop's clock started before uv_run: on a slow machine (valgrind)
     * the 5 ms timer can be due before the idle handle has dispatched k1. */
    uv_timer_start(t, sd_tick, 5, 0);
    return;
  }
  switch (s->step++) {
  case 0: /* k1 held in flight, k2 queued behind it (concurrency 1) */
    CHECK_EQ_U(s->processed, 1);
    thaw_workqueue_shutdown(s->q, sd_drained);
    thaw_workqueue_shutdown(s->q, sd_drained); /* second call: no-op */
    CHECK(thaw_workqueue_add(s->q, "k9") == THAW_ECANCELED);
    CHECK(thaw_workqueue_add_rate_limited(s->q, "k9") == THAW_ECANCELED);
    uv_timer_start(t, sd_tick, 5, 0);
    break;
  case 1:
    CHECK_EQ_U(s->drained, 0); /* k1 still in flight */
    CHECK(thaw_workqueue_done(s->q, s->tok, THAW_WQ_RETRY, 0) == 0);
    uv_timer_start(t, sd_tick, 5, 0);
    break;
  default:
    CHECK_EQ_U(s->drained, 1);
    CHECK_EQ_U(s->processed, 1); /* k2 was dropped, k1 not retried */
    thaw_workqueue_free(s->q);
    uv_close((uv_handle_t *)t, NULL);
  }
}

static void test_shutdown_drain(void) {
  uv_loop_t loop;
  CHECK(uv_loop_init(&loop) == 0);
  sd_t s = {0};
  thaw_workqueue_opts_t o = {.concurrency = 1};
  CHECK(thaw_workqueue_new(&s.q, &loop, &o, process_hold, &s) == 0);
  CHECK(thaw_workqueue_add(s.q, "k1") == 0);
  CHECK(thaw_workqueue_add(s.q, "k2") == 0);
  CHECK(thaw_workqueue_add_after(s.q, "k3", 100000) == 0);
  uv_timer_init(&loop, &s.timer);
  s.timer.data = &s;
  uv_timer_start(&s.timer, sd_tick, 5, 0);
  close_loop(&loop);
  CHECK_EQ_U(s.step, 3);
}

/* free() while a token is in flight; done() afterwards releases memory. */
typedef struct {
  thaw_workqueue_t *q;
  uv_timer_t timer;
  thaw_workqueue_token_t *tok;
} late_t;

static void late_done(uv_timer_t *t) {
  late_t *l = t->data;
  CHECK(thaw_workqueue_done(l->q, l->tok, THAW_WQ_SUCCESS, 0) == 0);
  uv_close((uv_handle_t *)t, NULL);
}

static void process_free_inside(thaw_workqueue_t *q, const char *key,
                                thaw_workqueue_token_t *tok, void *data) {
  late_t *l = data;
  (void)key;
  l->tok = tok;
  thaw_workqueue_free(q); /* from inside the callback */
  uv_timer_start(&l->timer, late_done, 5, 0);
}

static void test_free_in_flight(void) {
  uv_loop_t loop;
  CHECK(uv_loop_init(&loop) == 0);
  late_t l = {0};
  uv_timer_init(&loop, &l.timer);
  l.timer.data = &l;
  thaw_workqueue_opts_t o = {.concurrency = 2};
  CHECK(thaw_workqueue_new(&l.q, &loop, &o, process_free_inside, &l) == 0);
  CHECK(thaw_workqueue_add(l.q, "k1") == 0);
  CHECK(thaw_workqueue_add(l.q, "k2") == 0); /* never handed out */
  close_loop(&loop);
}

int main(void) {
  test_backoff_math();
  test_bucket_math();
  test_dedup_and_fifo();
  test_dirty_requeue();
  test_randomized();
  test_backoff_on_loop();
  test_bucket_on_loop();
  test_add_after();
  test_retry_after();
  test_free_with_pending();
  test_shutdown_drain();
  test_free_in_flight();
  if (failures) {
    fprintf(stderr, "test_workqueue: %d failure(s)\n", failures);
    return 1;
  }
  fprintf(stderr, "test_workqueue: all passed\n");
  return 0;
}
