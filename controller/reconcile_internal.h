/* reconcile_internal.h - shared between reconcile.c (the queue, the
 * informer, the decision) and job.c (one processing of one object:
 * credentials, warm or refresh, status writes). */
#ifndef THAW_RECONCILE_INTERNAL_H
#define THAW_RECONCILE_INTERNAL_H

#include <stdint.h>
#include <time.h>

#include "cirec.h"
#include "denied.h"
#include "events.h"
#include "imgref.h"
#include "reconcile.h"
#include "store.h"
#include "workqueue.h"

typedef struct job job_t;
/* Where a job goes once the pull secrets are read (job_creds.c). */
typedef void (*thaw_job_creds_cb)(job_t *j, const thaw_regauth_creds_t *creds);

struct thaw_reconciler {
  uv_loop_t *loop;
  thaw_reconciler_opts_t o;
  const thaw_config_t *cfg;
  thaw_informer_t *inf;
  thaw_workqueue_t *q; /* NULL while not active */
  thaw_warmer_t *warmer; /* NULL while not active */
  job_t *jobs;         /* every live job, for cancel */
  unsigned warming;
  int closing; /* freed by its owner; the last job releases it */
  int paused;  /* for GC: no warm starts */
  void (*drained)(void *ctx); /* pending drain notice while paused */
  void *drained_ctx;
  uv_timer_t drain_timer; /* runs the drain notice on the loop */
  /* name -> resourceVersion of our last final status write: the store is
   * stale for that object until its watch event brings that version. */
  thaw_store_t *written;
  /* name -> wall-clock ms before which it is not tried again: a 429's
   * Retry-After or a backoff, also when an event re-queues it sooner. */
  thaw_store_t *not_before;
  thaw_events_t *events;
  /* status patches refused (403): logged once; the job is retried with
   * the work queue's backoff like any failed final write */
  thaw_denied_t status_denied;
  thaw_metric_t *m_phase, *m_size, *m_total, *m_duration, *m_bytes;
  thaw_reconciler_hooks_t hooks;
};

struct job {
  thaw_reconciler_t *r;
  thaw_workqueue_t *q;
  thaw_workqueue_token_t *tok;
  job_t *prev, *next;
  unsigned refs;        /* async operations outstanding */
  int canceled, ending, writing, final_written;
  thaw_workqueue_result_t result;
  uint64_t after_ms;
  cJSON *queued;        /* next status patch, sent when `writing` ends */
  int queued_final;
  thaw_warm_t *warm;
  int refresh;          /* warming a new digest of a Ready tag */
  int had_creds;
  thaw_regauth_creds_t creds; /* from a pull secret; wiped when freed */
  uint64_t started_ms, progress_ms;
  /* A copy of what the decision needs from the record. */
  enum thaw_ci_phase phase;
  uint8_t flags;
  uint32_t attempts;
  thaw_imgref_t ref;
  char name[254], uid[64], digest[136], upstream[136];
  char *secrets[16];    /* "ns/name" usable pull secrets */
  size_t n_secrets;
  int secrets_from_pods; /* not in spec yet: write them there */
  thaw_job_creds_cb creds_then; /* where the job goes once creds are read */
};

/* reconcile.c: frees r (after the last job, once closing). */
void thaw_reconciler_release(thaw_reconciler_t *r);
/* reconcile.c: a warm ended; tells a paused owner when none is left. */
void thaw_reconciler_warm_ended(thaw_reconciler_t *r);

/* job.c: the decision for the object (the PROCESS rows of phase.h), then
 * the warm or the refresh HEAD. */
void thaw_job_run(job_t *j);

/* job_status.c: life cycle, writes, Events. */
job_t *thaw_job_new(thaw_reconciler_t *r, thaw_workqueue_t *q,
                    thaw_workqueue_token_t *tok, const char *key,
                    const thaw_cirec_t *c);
/* Stops the job's warm; no status is written afterwards. */
void thaw_job_cancel(job_t *j);
/* Ends the processing once its writes are out: done(result, after). */
void thaw_job_end(job_t *j, thaw_workqueue_result_t result, uint64_t after);
/* Takes `status` (a merge patch of .status). The final write replaces
 * whatever is queued; a progress write replaces a queued progress write. */
void thaw_job_patch(job_t *j, cJSON *status, int final);
/* Failed with `msg`; retried after the backoff (or retry_after seconds,
 * whichever is longer), or not at all when `retry` is 0. */
void thaw_job_fail(job_t *j, const char *msg, long retry_after, int retry,
                   int private_);
/* A refresh that failed leaves the cached image Ready and says why. */
void thaw_job_refresh_failed(job_t *j, const char *msg, long retry_after);
void thaw_job_event(job_t *j, const char *type, const char *reason,
                    const char *msg);
void thaw_job_add_message(cJSON *o, const char *msg);
uint64_t thaw_job_now_ms(void);  /* monotonic */
/* No new attempt for this object before delay_ms from now. */
void thaw_job_not_before(job_t *j, uint64_t delay_ms);
uint64_t thaw_job_backoff_ms(const thaw_reconciler_t *r, uint32_t attempts);

/* job_creds.c: finds usable pull secrets and starts reading them; the job
 * goes on in then(j, creds) once they are read (a failure ends the job).
 * 0, or an error when there is none. */
int thaw_job_find_creds(job_t *j, const thaw_cirec_t *c, thaw_job_creds_cb then);

#endif
