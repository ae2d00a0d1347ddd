/* gc.h - the controller's side of registry garbage collection
 * (docs/design.md "Garbage collection"): distribution's collector must not
 * run while anything pushes, so a run is
 *
 *   GET /gc (the agent answers; else the run fails, nothing paused) ->
 *   pause (no new push) -> drained (none in flight) -> POST /gc to
 *   thaw-registry-gc -> GET /gc every 500 ms until that run has ended ->
 *   resume -> metrics
 *
 * and a new leader waits, before its first push, until the agent has no run
 * in flight (its predecessor may have started one). Pulls are served
 * throughout: the collector only deletes blobs no manifest references.
 * Runs happen only while leading, at least `interval_ms` apart; a failed
 * run (or an agent that cannot be reached) resumes pushes and is retried
 * after min(interval, 5 min). Everything runs on the loop. */
#ifndef THAW_GC_H
#define THAW_GC_H

#include <stdint.h>
#include <uv.h>

#include "http.h"
#include "metrics.h"

typedef struct thaw_gc thaw_gc_t;
typedef void (*thaw_gc_drained_cb)(void *ctx);

typedef struct {
  const char *agent_url;   /* --gc-url; NULL/"" = no GC (every call a no-op,
                              running() 0) */
  uint64_t interval_ms;    /* --gc-interval: at least this between runs */
  thaw_metrics_t *metrics; /* thaw_gc_runs_total{result=success|failure}
                              (both at 0 from the start),
                              thaw_gc_reclaimed_bytes_total,
                              thaw_gc_last_success_timestamp_seconds;
                              may be NULL */
  /* Stop starting pushes; call drained(ctx) once none is in flight. */
  void (*pause)(thaw_gc_drained_cb drained, void *ctx, void *data);
  void (*resume)(void *data); /* pushes may start again */
  void *data;
} thaw_gc_opts_t;

/* Strings are copied; `http` must outlive the gc. Returns 0 and sets *out,
 * or THAW_EINVAL (an agent URL without pause/resume) / THAW_ENOMEM. */
int thaw_gc_new(uv_loop_t *loop, thaw_http_t *http, const thaw_gc_opts_t *o,
                thaw_gc_t **out);

/* Leading: before any push, wait until the agent has no run in flight (a
 * former leader may have started one): GET /gc until running is false (or
 * the agent cannot be reached for 30 s: then go on and say so), then
 * ready(data), on the loop. The interval counts from now: a former leader
 * may have run just before, and one run follows within the interval anyway
 * (the garbage a former leader left behind is not known here).
 * Not leading: abandon polling (a run in flight on the agent finishes by
 * itself); a pause this gc made is resumed. Without an agent, ready(data)
 * runs at once. */
void thaw_gc_set_active(thaw_gc_t *gc, int leading, void (*ready)(void *data),
                        void *data);

/* Manifests were deleted (bytes: what the controller expects to be freed):
 * run once the interval since the last run has passed, when leading. */
void thaw_gc_request(thaw_gc_t *gc, int64_t expected_bytes);

/* 1 from pause until the run has ended and resume was called, and while a
 * new leader waits for the agent's run in flight: deletes of manifests
 * must wait too (the collector's mark fails on a manifest that vanishes
 * under it). */
int thaw_gc_running(const thaw_gc_t *gc);

/* Cancels the request in flight; no callback runs afterwards (resume
 * neither: free it before what pause/resume act on, and before `http`).
 * NULL does nothing. Run the loop afterwards so its timer closes. */
void thaw_gc_free(thaw_gc_t *gc);

#endif
