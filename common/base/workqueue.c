/* workqueue.c - the rate-limited key queue of workqueue.h.
 *
 * Each key has one item, found through a chained hash table. An item is in
 * at most one of each: the ready FIFO (queued), the in-flight set
 * (processing), the delay heap (waiting). It lives while it is in any of
 * them or still has a backoff to remember (failures > 0). One uv_timer_t
 * serves the earliest waiting item; one uv_idle_t hands ready items to the
 * process callback, so that callback never runs inside a public call. */
#include "workqueue.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"

#define NOT_WAITING SIZE_MAX

struct thaw_workqueue_item {
  char *key;
  uint32_t hash;
  struct thaw_workqueue_item *hnext; /* hash chain */
  struct thaw_workqueue_item *next;  /* ready FIFO */
  unsigned failures;
  unsigned queued : 1, processing : 1, dirty : 1;
  size_t heap_idx; /* NOT_WAITING or index in q->heap */
  uint64_t ready_at;
  uint64_t seq; /* tie-break: equal times leave the heap in add order */
};

typedef struct thaw_workqueue_item item_t;

struct thaw_workqueue {
  uv_loop_t *loop;
  uv_timer_t timer;
  uv_idle_t idle;
  thaw_workqueue_opts_t opts;
  thaw_workqueue_process_cb process;
  void *data;

  item_t **buckets;
  size_t nbuckets; /* power of two */
  size_t nitems;

  item_t *head, *tail; /* ready FIFO */
  size_t depth;

  item_t **heap; /* min-heap on (ready_at, seq) */
  size_t heap_len, heap_cap;
  uint64_t seq;

  size_t active;
  thaw_token_bucket_t bucket;
  uint64_t adds_total, retries_total;

  int shut;
  int freeing;
  int open_handles;
  thaw_workqueue_drained_cb drained;
  int drained_called;
};

/* ---- pure arithmetic ---- */

uint64_t thaw_backoff_delay_ms(uint64_t base_ms, uint64_t max_ms,
                               unsigned failures) {
  if (base_ms > max_ms)
    return max_ms;
  if (failures >= 64 || base_ms > (max_ms >> failures))
    return max_ms;
  return base_ms << failures;
}

void thaw_token_bucket_init(thaw_token_bucket_t *b, double qps, unsigned burst,
                            uint64_t now_ms) {
  b->qps = qps;
  b->burst = burst;
  b->tokens = burst;
  b->last_ms = now_ms;
}

uint64_t thaw_token_bucket_reserve(thaw_token_bucket_t *b, uint64_t now_ms) {
  if (!(b->qps > 0))
    return 0;
  if (now_ms > b->last_ms) {
    b->tokens += (double)(now_ms - b->last_ms) * b->qps / 1000.0;
    if (b->tokens > b->burst)
      b->tokens = b->burst;
    b->last_ms = now_ms;
  }
  b->tokens -= 1.0;
  if (b->tokens >= 0)
    return 0;
  /* The epsilon keeps 2900.0000001 from becoming 2901 ms. */
  double ms = ceil(-b->tokens * 1000.0 / b->qps - 1e-9);
  if (ms >= 1.8e19)
    return UINT64_MAX;
  return ms < 0 ? 0 : (uint64_t)ms;
}

/* ---- hash table ---- */

static uint32_t hash_key(const char *s) {
  uint32_t h = 2166136261u; /* FNV-1a */
  for (; *s; s++) {
    h ^= (unsigned char)*s;
    h *= 16777619u;
  }
  return h;
}

static item_t *lookup(const thaw_workqueue_t *q, const char *key) {
  uint32_t h = hash_key(key);
  for (item_t *it = q->buckets[h & (q->nbuckets - 1)]; it; it = it->hnext)
    if (it->hash == h && strcmp(it->key, key) == 0)
      return it;
  return NULL;
}

static int grow(thaw_workqueue_t *q) {
  size_t n = q->nbuckets * 2;
  item_t **b = calloc(n, sizeof(*b));
  if (b == NULL)
    return THAW_ENOMEM;
  for (size_t i = 0; i < q->nbuckets; i++) {
    item_t *it = q->buckets[i];
    while (it) {
      item_t *next = it->hnext;
      it->hnext = b[it->hash & (n - 1)];
      b[it->hash & (n - 1)] = it;
      it = next;
    }
  }
  free(q->buckets);
  q->buckets = b;
  q->nbuckets = n;
  return 0;
}

static int check_key(const char *key) {
  if (key == NULL || key[0] == '\0' ||
      strnlen(key, THAW_WORKQUEUE_KEY_MAX + 1) > THAW_WORKQUEUE_KEY_MAX)
    return THAW_EINVAL;
  return 0;
}

static item_t *get_or_create(thaw_workqueue_t *q, const char *key) {
  item_t *it = lookup(q, key);
  if (it)
    return it;
  if (q->nitems >= q->nbuckets && grow(q) != 0)
    return NULL;
  it = calloc(1, sizeof(*it));
  if (it == NULL)
    return NULL;
  it->key = strdup(key);
  if (it->key == NULL) {
    free(it);
    return NULL;
  }
  it->hash = hash_key(key);
  it->heap_idx = NOT_WAITING;
  item_t **slot = &q->buckets[it->hash & (q->nbuckets - 1)];
  it->hnext = *slot;
  *slot = it;
  q->nitems++;
  return it;
}

static void unlink_item(thaw_workqueue_t *q, item_t *it) {
  item_t **p = &q->buckets[it->hash & (q->nbuckets - 1)];
  while (*p != it)
    p = &(*p)->hnext;
  *p = it->hnext;
  q->nitems--;
  free(it->key);
  free(it);
}

/* Frees the item when nothing refers to it any more. */
static void maybe_release(thaw_workqueue_t *q, item_t *it) {
  if (!it->queued && !it->processing && it->heap_idx == NOT_WAITING &&
      (it->failures == 0 || q->shut))
    unlink_item(q, it);
}

/* ---- delay heap ---- */

static int heap_less(const item_t *a, const item_t *b) {
  return a->ready_at < b->ready_at ||
         (a->ready_at == b->ready_at && a->seq < b->seq);
}

static void heap_set(thaw_workqueue_t *q, size_t i, item_t *it) {
  q->heap[i] = it;
  it->heap_idx = i;
}

static void heap_up(thaw_workqueue_t *q, size_t i) {
  item_t *it = q->heap[i];
  while (i > 0) {
    size_t parent = (i - 1) / 2;
    if (!heap_less(it, q->heap[parent]))
      break;
    heap_set(q, i, q->heap[parent]);
    i = parent;
  }
  heap_set(q, i, it);
}

static void heap_down(thaw_workqueue_t *q, size_t i) {
  item_t *it = q->heap[i];
  for (;;) {
    size_t c = 2 * i + 1;
    if (c >= q->heap_len)
      break;
    if (c + 1 < q->heap_len && heap_less(q->heap[c + 1], q->heap[c]))
      c++;
    if (!heap_less(q->heap[c], it))
      break;
    heap_set(q, i, q->heap[c]);
    i = c;
  }
  heap_set(q, i, it);
}

static item_t *heap_pop(thaw_workqueue_t *q) {
  item_t *top = q->heap[0];
  q->heap_len--;
  if (q->heap_len > 0) {
    heap_set(q, 0, q->heap[q->heap_len]);
    heap_down(q, 0);
  }
  top->heap_idx = NOT_WAITING;
  return top;
}

/* ---- scheduling ---- */

static void idle_cb(uv_idle_t *h);
static void timer_cb(uv_timer_t *h);

static void schedule(thaw_workqueue_t *q) {
  if (!q->shut && q->head && q->active < q->opts.concurrency)
    uv_idle_start(&q->idle, idle_cb);
}

static void rearm(thaw_workqueue_t *q) {
  if (q->heap_len == 0) {
    uv_timer_stop(&q->timer);
    return;
  }
  uint64_t now = uv_now(q->loop), due = q->heap[0]->ready_at;
  uv_timer_start(&q->timer, timer_cb, due > now ? due - now : 0, 0);
}

static void enqueue(thaw_workqueue_t *q, item_t *it) {
  if (it->queued)
    return;
  if (it->processing) {
    it->dirty = 1; /* re-queued by done() */
    return;
  }
  it->queued = 1;
  it->next = NULL;
  if (q->tail)
    q->tail->next = it;
  else
    q->head = it;
  q->tail = it;
  q->depth++;
  q->adds_total++;
  schedule(q);
}

static int wait_item(thaw_workqueue_t *q, item_t *it, uint64_t delay_ms) {
  if (delay_ms == 0) {
    enqueue(q, it);
    return 0;
  }
  uint64_t now = uv_now(q->loop);
  uint64_t at = delay_ms > UINT64_MAX - now ? UINT64_MAX : now + delay_ms;
  if (it->heap_idx != NOT_WAITING) {
    if (at < it->ready_at) { /* the earlier time wins */
      it->ready_at = at;
      heap_up(q, it->heap_idx);
      rearm(q);
    }
    return 0;
  }
  if (q->heap_len == q->heap_cap) {
    size_t cap = q->heap_cap ? q->heap_cap * 2 : 16;
    item_t **h = realloc(q->heap, cap * sizeof(*h));
    if (h == NULL)
      return THAW_ENOMEM;
    q->heap = h;
    q->heap_cap = cap;
  }
  it->ready_at = at;
  it->seq = q->seq++;
  heap_set(q, q->heap_len++, it);
  heap_up(q, it->heap_idx);
  rearm(q);
  return 0;
}

static uint64_t rate_limit_delay(thaw_workqueue_t *q, item_t *it) {
  uint64_t d = thaw_backoff_delay_ms(q->opts.backoff_base_ms,
                                     q->opts.backoff_max_ms, it->failures);
  if (it->failures < UINT32_MAX)
    it->failures++;
  if (q->opts.qps > 0) {
    uint64_t b = thaw_token_bucket_reserve(&q->bucket, uv_now(q->loop));
    if (b > d)
      d = b;
  }
  q->retries_total++;
  return d;
}

static void timer_cb(uv_timer_t *h) {
  thaw_workqueue_t *q = h->data;
  uint64_t now = uv_now(q->loop);
  while (q->heap_len > 0 && q->heap[0]->ready_at <= now)
    enqueue(q, heap_pop(q));
  rearm(q);
}

static void maybe_drained(thaw_workqueue_t *q) {
  if (q->shut && q->drained && !q->drained_called && q->active == 0 &&
      !q->freeing)
    uv_idle_start(&q->idle, idle_cb);
}

static void idle_cb(uv_idle_t *h) {
  thaw_workqueue_t *q = h->data;
  uv_idle_stop(&q->idle);
  while (!q->shut && q->head && q->active < q->opts.concurrency) {
    item_t *it = q->head;
    q->head = it->next;
    if (q->head == NULL)
      q->tail = NULL;
    it->next = NULL;
    it->queued = 0;
    q->depth--;
    it->processing = 1;
    q->active++;
    q->process(q, it->key, it, q->data);
  }
  if (q->shut && q->drained && !q->drained_called && q->active == 0 &&
      !q->freeing) {
    q->drained_called = 1;
    q->drained(q, q->data);
  }
}

/* ---- public API ---- */

int thaw_workqueue_new(thaw_workqueue_t **out, uv_loop_t *loop,
                       const thaw_workqueue_opts_t *opts,
                       thaw_workqueue_process_cb process, void *data) {
  if (out == NULL)
    return THAW_EINVAL;
  *out = NULL;
  if (loop == NULL || process == NULL)
    return THAW_EINVAL;
  thaw_workqueue_t *q = calloc(1, sizeof(*q));
  if (q == NULL)
    return THAW_ENOMEM;
  if (opts)
    q->opts = *opts;
  if (q->opts.concurrency == 0)
    q->opts.concurrency = 1;
  if (q->opts.backoff_base_ms == 0)
    q->opts.backoff_base_ms = 5;
  if (q->opts.backoff_max_ms == 0)
    q->opts.backoff_max_ms = 1000 * 1000;
  if (q->opts.qps == 0)
    q->opts.qps = 10;
  if (q->opts.burst == 0)
    q->opts.burst = 100;
  if (isnan(q->opts.qps)) {
    free(q);
    return THAW_EINVAL;
  }
  q->loop = loop;
  q->process = process;
  q->data = data;
  q->nbuckets = 64;
  q->buckets = calloc(q->nbuckets, sizeof(*q->buckets));
  if (q->buckets == NULL) {
    free(q);
    return THAW_ENOMEM;
  }
  thaw_token_bucket_init(&q->bucket, q->opts.qps, q->opts.burst, uv_now(loop));
  /* Neither init allocates or fails on a live loop. */
  uv_timer_init(loop, &q->timer);
  uv_idle_init(loop, &q->idle);
  q->timer.data = q;
  q->idle.data = q;
  q->open_handles = 2;
  *out = q;
  return 0;
}

int thaw_workqueue_add(thaw_workqueue_t *q, const char *key) {
  return thaw_workqueue_add_after(q, key, 0);
}

int thaw_workqueue_add_after(thaw_workqueue_t *q, const char *key,
                             uint64_t delay_ms) {
  if (q == NULL || check_key(key) != 0)
    return THAW_EINVAL;
  if (q->shut)
    return THAW_ECANCELED;
  item_t *it = get_or_create(q, key);
  if (it == NULL)
    return THAW_ENOMEM;
  int rc = wait_item(q, it, delay_ms);
  maybe_release(q, it);
  return rc;
}

int thaw_workqueue_add_rate_limited(thaw_workqueue_t *q, const char *key) {
  if (q == NULL || check_key(key) != 0)
    return THAW_EINVAL;
  if (q->shut)
    return THAW_ECANCELED;
  item_t *it = get_or_create(q, key);
  if (it == NULL)
    return THAW_ENOMEM;
  return wait_item(q, it, rate_limit_delay(q, it));
}

void thaw_workqueue_forget(thaw_workqueue_t *q, const char *key) {
  if (q == NULL || check_key(key) != 0)
    return;
  item_t *it = lookup(q, key);
  if (it) {
    it->failures = 0;
    maybe_release(q, it);
  }
}

unsigned thaw_workqueue_num_requeues(const thaw_workqueue_t *q,
                                     const char *key) {
  if (q == NULL || check_key(key) != 0)
    return 0;
  const item_t *it = lookup(q, key);
  return it ? it->failures : 0;
}

const char *thaw_workqueue_token_key(const thaw_workqueue_token_t *tok) {
  return tok ? tok->key : NULL;
}

static void maybe_destroy(thaw_workqueue_t *q) {
  if (!q->freeing || q->open_handles > 0 || q->active > 0)
    return;
  for (size_t i = 0; i < q->nbuckets; i++)
    while (q->buckets[i])
      unlink_item(q, q->buckets[i]);
  free(q->buckets);
  free(q->heap);
  free(q);
}

int thaw_workqueue_done(thaw_workqueue_t *q, thaw_workqueue_token_t *tok,
                        thaw_workqueue_result_t result, uint64_t after_ms) {
  if (q == NULL || tok == NULL || !tok->processing)
    return THAW_EINVAL;
  item_t *it = tok;
  it->processing = 0;
  q->active--;
  if (q->shut) {
    it->dirty = 0;
    maybe_release(q, it);
    maybe_drained(q);
    maybe_destroy(q);
    return 0;
  }
  int rc = 0;
  switch (result) {
  case THAW_WQ_SUCCESS:
    it->failures = 0;
    break;
  case THAW_WQ_RETRY_AFTER:
    if (it->failures < UINT32_MAX)
      it->failures++;
    q->retries_total++;
    rc = wait_item(q, it, after_ms);
    break;
  case THAW_WQ_RETRY:
  default:
    /* An unknown result is retried rather than losing the key. */
    rc = wait_item(q, it, rate_limit_delay(q, it));
    if (result != THAW_WQ_RETRY && rc == 0)
      rc = THAW_EINVAL;
    break;
  }
  if (it->dirty) {
    it->dirty = 0;
    enqueue(q, it);
  }
  schedule(q);
  maybe_release(q, it);
  return rc;
}

void thaw_workqueue_stats(const thaw_workqueue_t *q,
                          thaw_workqueue_stats_t *out) {
  memset(out, 0, sizeof(*out));
  if (q == NULL)
    return;
  out->depth = q->depth;
  out->active = q->active;
  out->waiting = q->heap_len;
  out->adds_total = q->adds_total;
  out->retries_total = q->retries_total;
}

void thaw_workqueue_shutdown(thaw_workqueue_t *q,
                             thaw_workqueue_drained_cb drained) {
  if (q == NULL || q->shut)
    return;
  q->shut = 1;
  q->drained = drained;
  uv_timer_stop(&q->timer);
  uv_idle_stop(&q->idle);
  for (item_t *it = q->head; it; it = it->next)
    it->queued = 0;
  q->head = q->tail = NULL;
  q->depth = 0;
  for (size_t i = 0; i < q->heap_len; i++)
    q->heap[i]->heap_idx = NOT_WAITING;
  q->heap_len = 0;
  /* Drop everything that is not in flight; in-flight items go in done(). */
  for (size_t i = 0; i < q->nbuckets; i++) {
    item_t *it = q->buckets[i];
    while (it) {
      item_t *next = it->hnext;
      it->dirty = 0;
      maybe_release(q, it);
      it = next;
    }
  }
  maybe_drained(q);
}

static void close_cb(uv_handle_t *h) {
  thaw_workqueue_t *q = h->data;
  q->open_handles--;
  maybe_destroy(q);
}

void thaw_workqueue_free(thaw_workqueue_t *q) {
  if (q == NULL || q->freeing)
    return;
  thaw_workqueue_shutdown(q, NULL);
  q->drained = NULL;
  q->freeing = 1;
  uv_close((uv_handle_t *)&q->timer, close_cb);
  uv_close((uv_handle_t *)&q->idle, close_cb);
}
