/* record.h - creates CachedImages off the hot path: the webhook's cold
 * images (DESIGN.md, decision 6) and the controller's pod sweep and
 * pre-warm (controller/sources.h).
 *
 * thaw_recorder_record() only enqueues. A work queue (common/base/workqueue)
 * de-duplicates concurrent admissions of the same image and runs at most a
 * few creates at once; a failed create is retried with per-key exponential
 * backoff (a 403 too: RBAC may be fixed; it is logged once, see denied.h);
 * "AlreadyExists" counts as success. A reference that the owner's
 * `exists` callback knows (its CachedImage informer has it), queued, in
 * flight, or created within the last minutes is not created again. The object is named with
 * thaw_cachedimage_name() and labelled app.kubernetes.io/managed-by=thaw. */
#ifndef THAW_RECORD_H
#define THAW_RECORD_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "kube.h"

typedef struct thaw_recorder thaw_recorder_t;

/* 1 when a CachedImage for `normalized` is known to exist, so no create is
 * needed; asked on record and again before each create. */
typedef int (*thaw_recorder_exists_cb)(const char *normalized, void *data);

/* Outcome of one record of `normalized` (valid during the call), the label
 * of thaw_webhook_records_total{result}: "created", "exists"
 * (AlreadyExists), "retry" (a failed attempt that will be retried),
 * "failed" (gave up after the retry limit), "dropped" (the queue was
 * full). */
typedef void (*thaw_recorder_result_cb)(const char *result,
                                        const char *normalized, void *data);

/* `exists` may be NULL (no de-duplication against existing objects); what
 * exists_data points to and `kube` must outlive the recorder. Returns 0 or
 * THAW_ENOMEM. */
int thaw_recorder_new(uv_loop_t *loop, thaw_kube_t *kube,
                      thaw_recorder_exists_cb exists, void *exists_data,
                      thaw_recorder_t **out);
/* Tuning; zero fields take the defaults in brackets. */
typedef struct {
  unsigned concurrency;     /* creates at once [4] */
  uint64_t backoff_base_ms; /* per-key retry delay, doubling [200] */
  uint64_t backoff_max_ms;  /* its cap [60000] */
  double qps;               /* global create rate [20] */
  unsigned burst;           /* [50] */
  unsigned max_attempts;    /* creates per record before "failed" [10] */
  size_t max_pending;       /* queued + in flight, beyond: "dropped" [10000] */
  uint64_t recent_ms;       /* a finished reference is ignored this long [300000] */
  const char *field_manager; /* of the creates, copied ["thaw-webhook"] */
} thaw_recorder_opts_t;

/* thaw_recorder_new() with `opts` (NULL: defaults). */
int thaw_recorder_new_opts(uv_loop_t *loop, thaw_kube_t *kube,
                           thaw_recorder_exists_cb exists, void *exists_data,
                           const thaw_recorder_opts_t *opts,
                           thaw_recorder_t **out);
void thaw_recorder_set_observer(thaw_recorder_t *r, thaw_recorder_result_cb cb,
                                void *data);
/* Enqueues `normalized` for creation; returns at once and never fails (a
 * full queue drops, reported as "dropped"). */
void thaw_recorder_record(thaw_recorder_t *r, const char *normalized);
/* An informer saw a CachedImage for `normalized`: stop retrying it. */
void thaw_recorder_forget(thaw_recorder_t *r, const char *normalized);
/* thaw_recorder_forget() as a (normalized, data: the recorder) callback,
 * e.g. thaw_index_set_observer(ix, thaw_recorder_index_observer, r). */
void thaw_recorder_index_observer(const char *normalized, void *recorder);
/* Pending + in-flight references. */
size_t thaw_recorder_pending(const thaw_recorder_t *r);
/* Cancels queued work; memory goes once requests have called back (run the
 * loop). Free it before its thaw_kube_t. NULL does nothing. */
void thaw_recorder_free(thaw_recorder_t *r);

#endif
