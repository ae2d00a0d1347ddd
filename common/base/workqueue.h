/* workqueue.h - a rate-limited work queue of string keys on a uv_loop_t.
 *
 * The C counterpart of client-go's workqueue.RateLimitingInterface plus the
 * sample-controller worker loop: informer callbacks only add
 * "namespace/name" keys; the queue hands each ready key to a user `process`
 * callback, at most `concurrency` keys at a time and never the same key twice
 * at once; the callback finishes, now or later, with thaw_workqueue_done().
 *
 * - add() de-duplicates: a key is queued once however often it is added.
 *   A key added while it is being processed is marked dirty and queued again
 *   only after its thaw_workqueue_done() (so no two workers share a key).
 * - Ready keys are handed out in FIFO order of their (first) add.
 * - add_rate_limited() adds after max(per-key exponential backoff, global
 *   token bucket delay), like client-go's MaxOfRateLimiter of
 *   ItemExponentialFailureRateLimiter and BucketRateLimiter.
 *
 * Single-threaded: every function must be called on the loop's thread. The
 * process callback is never called from inside a thaw_workqueue_* call; it is
 * always called from the loop (an idle handle), so callers need not worry
 * about re-entrancy. Keys are copied; the queue owns its copies. */
#ifndef THAW_WORKQUEUE_H
#define THAW_WORKQUEUE_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

/* Longest key accepted (bytes, without the NUL); longer keys are THAW_EINVAL.
 * Kubernetes "namespace/name" keys are at most 63 + 1 + 253 bytes. */
#define THAW_WORKQUEUE_KEY_MAX 1024

typedef struct thaw_workqueue thaw_workqueue_t;
/* Identifies one in-flight processing of one key; valid until
 * thaw_workqueue_done() is called with it. */
typedef struct thaw_workqueue_item thaw_workqueue_token_t;

/* Called on the loop for each key that is ready. `key` stays valid until
 * thaw_workqueue_done(q, tok, ...) is called, which the callback must do
 * exactly once, from inside the callback or later. */
typedef void (*thaw_workqueue_process_cb)(thaw_workqueue_t *q, const char *key,
                                          thaw_workqueue_token_t *tok,
                                          void *data);

/* Options. Zero-initialise; a zero field takes its default. */
typedef struct {
  unsigned concurrency;     /* keys processed at once; default 1 */
  uint64_t backoff_base_ms; /* first per-key retry delay; default 5 */
  uint64_t backoff_max_ms;  /* cap of the per-key delay; default 1000 s */
  double qps;               /* global bucket rate; default 10, < 0 disables */
  unsigned burst;           /* global bucket size; default 100 */
} thaw_workqueue_opts_t;

/* How a processing ended (thaw_workqueue_done). */
typedef enum {
  /* Reconciled: forget the key's backoff (client-go Forget). */
  THAW_WQ_SUCCESS = 0,
  /* Failed: re-add after the rate-limited delay (AddRateLimited). */
  THAW_WQ_RETRY = 1,
  /* Failed with a known delay (e.g. 429 Retry-After): re-add after exactly
   * `after_ms`; counts as a requeue but does not grow the backoff. */
  THAW_WQ_RETRY_AFTER = 2,
} thaw_workqueue_result_t;

/* Counters for metrics. Totals only ever grow. */
typedef struct {
  size_t depth;        /* keys ready and waiting for a worker */
  size_t active;       /* keys being processed */
  size_t waiting;      /* keys waiting for a delay (add_after / retries) */
  uint64_t adds_total; /* keys that entered the ready queue */
  uint64_t retries_total; /* add_rate_limited calls (incl. THAW_WQ_RETRY) */
} thaw_workqueue_stats_t;

/* Creates a queue on `loop`. `process` is required; `data` is passed to it.
 * Returns 0 and sets *out, or THAW_EINVAL / THAW_ENOMEM (then *out = NULL and
 * nothing is left on the loop). */
int thaw_workqueue_new(thaw_workqueue_t **out, uv_loop_t *loop,
                       const thaw_workqueue_opts_t *opts,
                       thaw_workqueue_process_cb process, void *data);

/* Queues `key` now (de-duplicated, see above). Returns 0, THAW_EINVAL (NULL,
 * empty or over THAW_WORKQUEUE_KEY_MAX), THAW_ENOMEM, or THAW_ECANCELED after
 * shutdown. */
int thaw_workqueue_add(thaw_workqueue_t *q, const char *key);

/* Queues `key` after `delay_ms` (0 = add now). If the key is already waiting,
 * the earlier of the two times wins. Same results as add. */
int thaw_workqueue_add_after(thaw_workqueue_t *q, const char *key,
                             uint64_t delay_ms);

/* Queues `key` after its rate-limited delay and counts one more requeue. */
int thaw_workqueue_add_rate_limited(thaw_workqueue_t *q, const char *key);

/* Resets the key's backoff (num_requeues becomes 0). Does not dequeue it. */
void thaw_workqueue_forget(thaw_workqueue_t *q, const char *key);

/* Rate-limited requeues of `key` since it was last forgotten. */
unsigned thaw_workqueue_num_requeues(const thaw_workqueue_t *q,
                                     const char *key);

/* Ends the processing `tok` of a process callback. `after_ms` is used only
 * with THAW_WQ_RETRY_AFTER. After shutdown the outcome is dropped. The token
 * is invalid afterwards (calling done twice is a use after free). Returns 0,
 * THAW_EINVAL for a NULL queue or token (ignored) or an unknown result
 * (treated as THAW_WQ_RETRY), or THAW_ENOMEM (the retry was lost). */
int thaw_workqueue_done(thaw_workqueue_t *q, thaw_workqueue_token_t *tok,
                        thaw_workqueue_result_t result, uint64_t after_ms);

/* The key of an in-flight token (same pointer the callback received). */
const char *thaw_workqueue_token_key(const thaw_workqueue_token_t *tok);

void thaw_workqueue_stats(const thaw_workqueue_t *q,
                          thaw_workqueue_stats_t *out);

/* Stops the queue: nothing more is handed out, queued and waiting keys are
 * dropped, timers stop, and later adds return THAW_ECANCELED. In-flight keys
 * keep running; their thaw_workqueue_done() is still accepted. `drained`
 * (may be NULL) is called once, from the loop, when no key is in flight any
 * more -- the moment a graceful shutdown may release the lease. Calling it
 * again does nothing. */
typedef void (*thaw_workqueue_drained_cb)(thaw_workqueue_t *q, void *data);
void thaw_workqueue_shutdown(thaw_workqueue_t *q,
                             thaw_workqueue_drained_cb drained);

/* Shuts the queue down (without a drained callback, if none was set) and
 * releases it: its uv handles are closed, and the memory is freed once their
 * close callbacks have run and every in-flight token has been done(). The
 * caller must not use `q` afterwards except to call thaw_workqueue_done() for
 * tokens still in flight. NULL does nothing. */
void thaw_workqueue_free(thaw_workqueue_t *q);

/* --- Pure rate-limiter arithmetic (no loop, no clock): exposed for tests. */

/* Per-key exponential delay for a key that has failed `failures` times
 * before: base * 2^failures, capped at max (no overflow for any input). */
uint64_t thaw_backoff_delay_ms(uint64_t base_ms, uint64_t max_ms,
                               unsigned failures);

/* Token bucket (golang.org/x/time/rate Reserve semantics): tokens refill at
 * `qps` per second up to `burst`; each reservation takes one token, going
 * negative, and returns how long the caller must wait for it. */
typedef struct {
  double qps;
  double burst;
  double tokens;
  uint64_t last_ms;
} thaw_token_bucket_t;

void thaw_token_bucket_init(thaw_token_bucket_t *b, double qps, unsigned burst,
                            uint64_t now_ms);
/* Reserves one token at `now_ms` (monotonic); returns the delay in ms. */
uint64_t thaw_token_bucket_reserve(thaw_token_bucket_t *b, uint64_t now_ms);

#endif
