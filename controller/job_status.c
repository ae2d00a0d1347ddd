/* job_status.c - a job's life cycle and its writes (reconcile_internal.h):
 * status patches go out one at a time, so that a late progress patch can
 * never land after the final one; Failed with its backoff; Events. The job
 * holds the work queue's token to the end, so no object is warmed twice at
 * once. */
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "clock.h"
#include "error.h"
#include "events.h"
#include "log.h"
#include "reconcile_internal.h"

#define MESSAGE_MAX THAW_CI_MESSAGE_MAX

uint64_t thaw_job_now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

void thaw_job_not_before(job_t *j, uint64_t delay_ms) {
  /* The rv slot holds the time; the record is unused. */
  if (thaw_store_put(j->r->not_before, j->name, thaw_wall_ms() + delay_ms,
                     NULL, NULL) < 0)
    thaw_warn("retry delay not kept (out of memory)", "name", j->name);
}

uint64_t thaw_job_backoff_ms(const thaw_reconciler_t *r, uint32_t attempts) {
  return thaw_backoff_delay_ms(r->o.backoff_base_ms, r->o.backoff_max_ms,
                               attempts > 0 ? attempts - 1 : 0);
}

/* --- life cycle ------------------------------------------------------ */

job_t *thaw_job_new(thaw_reconciler_t *r, thaw_workqueue_t *q,
                    thaw_workqueue_token_t *tok, const char *key,
                    const thaw_cirec_t *c) {
  job_t *j = calloc(1, sizeof *j);
  if (j == NULL)
    return NULL;
  j->r = r;
  j->q = q;
  j->tok = tok;
  j->phase = c->phase;
  j->flags = c->flags;
  j->attempts = c->attempts;
  j->started_ms = thaw_job_now_ms();
  snprintf(j->name, sizeof j->name, "%s", key);
  snprintf(j->uid, sizeof j->uid, "%s", c->uid);
  snprintf(j->digest, sizeof j->digest, "%s", c->digest);
  /* What a refresh compares with: the digest upstream, which differs from
   * the cache's when --platforms narrowed the index. */
  snprintf(j->upstream, sizeof j->upstream, "%s",
           c->upstream[0] ? c->upstream : c->digest);
  j->next = r->jobs;
  if (r->jobs)
    r->jobs->prev = j;
  r->jobs = j;
  return j;
}

static void job_free(job_t *j) {
  thaw_reconciler_t *r = j->r;
  if (j->prev)
    j->prev->next = j->next;
  else
    r->jobs = j->next;
  if (j->next)
    j->next->prev = j->prev;
  for (size_t i = 0; i < j->n_secrets; i++)
    free(j->secrets[i]);
  OPENSSL_cleanse(&j->creds, sizeof j->creds);
  cJSON_Delete(j->queued);
  free(j);
  if (r->closing && r->jobs == NULL)
    thaw_reconciler_release(r);
}

/* Frees the job once it has ended and nothing is outstanding. */
static void maybe_complete(job_t *j) {
  if (!j->ending || j->refs > 0 || j->writing || j->queued)
    return;
  thaw_workqueue_done(j->q, j->tok, j->result, j->after_ms);
  job_free(j);
}

void thaw_job_end(job_t *j, thaw_workqueue_result_t result, uint64_t after) {
  j->ending = 1;
  j->result = result;
  j->after_ms = after;
  maybe_complete(j);
}

void thaw_job_cancel(job_t *j) {
  j->canceled = 1;
  cJSON_Delete(j->queued); /* a write not yet sent is dropped */
  j->queued = NULL;
  if (j->warm)
    thaw_warm_cancel(j->warm); /* its done runs now and ends the job */
  else
    maybe_complete(j);
}

/* --- status writes ----------------------------------------------------- */

static void on_written(const thaw_kube_result_t *res, void *data) {
  job_t *j = data;
  j->refs--;
  j->writing = 0;
  int quiet = res->err != THAW_ECANCELED &&
              thaw_denied_note(&j->r->status_denied, res->err, "reconciler",
                               "patch", "cachedimages/status", res->message);
  if (res->err != 0 && res->err != THAW_ECANCELED && !quiet)
    thaw_warn("status not written", "name", j->name, "error",
              thaw_err_name(res->err), "message", res->message);
  if (j->final_written) {
    if (res->err == 0) {
      /* Until the watch delivers this version, the store is stale. */
      const cJSON *meta = cJSON_GetObjectItemCaseSensitive(res->body, "metadata");
      uint64_t rv = thaw_store_rv(cJSON_GetStringValue(
          cJSON_GetObjectItemCaseSensitive(meta, "resourceVersion")));
      if (rv > 0 && thaw_store_put(j->r->written, j->name, rv, NULL, NULL) < 0)
        thaw_warn("stale-read guard lost (out of memory)", "name", j->name);
    } else if (res->err == THAW_ENOTFOUND) {
      j->result = THAW_WQ_SUCCESS; /* deleted meanwhile: nothing to redo */
    } else if (res->err != THAW_ECANCELED) {
      j->result = THAW_WQ_RETRY; /* the object still says Warming */
    }
  }
  if (j->queued && !j->canceled) {
    cJSON *next = j->queued;
    j->queued = NULL;
    thaw_job_patch(j, next, j->queued_final);
    return;
  }
  maybe_complete(j);
}

/* Takes `status` (a merge patch of .status). The final write replaces
 * whatever is queued; a progress write replaces a queued progress write. */
void thaw_job_patch(job_t *j, cJSON *status, int final) {
  if (j->canceled || status == NULL) {
    cJSON_Delete(status);
    return;
  }
  if (j->writing) {
    if (j->queued && j->queued_final && !final) {
      cJSON_Delete(status); /* never overtake the final write */
      return;
    }
    cJSON_Delete(j->queued);
    j->queued = status;
    j->queued_final = final;
    return;
  }
  cJSON *body = cJSON_CreateObject();
  if (body == NULL) {
    cJSON_Delete(status);
    return;
  }
  cJSON_AddItemToObject(body, "status", status);
  thaw_kube_opts_t o = {.name = j->name, .subresource = "status",
                        .field_manager = "thaw-controller"};
  if (thaw_kube_merge_patch(j->r->o.kube, &thaw_kube_cachedimages, &o, body,
                            on_written, j) == 0) {
    j->writing = 1;
    j->refs++;
    j->final_written = final;
  } else if (final) {
    j->result = THAW_WQ_RETRY;
  }
  cJSON_Delete(body);
}


void thaw_job_add_message(cJSON *o, const char *msg) {
  if (msg == NULL || *msg == '\0') {
    cJSON_AddNullToObject(o, "message");
    return;
  }
  char buf[MESSAGE_MAX + 1];
  snprintf(buf, sizeof buf, "%s", msg);
  cJSON_AddStringToObject(o, "message", buf);
}


void thaw_job_event(job_t *j, const char *type, const char *reason,
                    const char *msg) {
  thaw_events_emit(j->r->events, j->name, j->uid, type, reason, msg);
}

/* Failed with `msg`; retried after the backoff (or retry_after seconds,
 * whichever is longer), or not at all when `retry` is 0. */
void thaw_job_fail(job_t *j, const char *msg, long retry_after, int retry,
                 int private_) {
  thaw_reconciler_t *r = j->r;
  uint32_t attempts = j->attempts + 1;
  cJSON *st = cJSON_CreateObject();
  if (st) {
    cJSON_AddStringToObject(st, "phase", "Failed");
    thaw_job_add_message(st, msg);
    cJSON_AddNumberToObject(st, "attempts", attempts);
    thaw_cirec_add_time(st, "lastCheckedAt", time(NULL));
    cJSON_AddNullToObject(st, "progress");
    if (private_)
      cJSON_AddTrueToObject(st, "private");
    thaw_cirec_add_ready(st, 0, "WarmFailed", msg);
  }
  thaw_job_patch(j, st, 1);
  thaw_job_event(j, "Warning", "WarmFailed", msg);
  thaw_warn("warm failed", "name", j->name, "image", j->ref.str, "message",
            msg);
  uint64_t delay = thaw_job_backoff_ms(r, attempts);
  if ((uint64_t)retry_after * 1000u > delay)
    delay = (uint64_t)retry_after * 1000u;
  if (retry)
    thaw_job_not_before(j, delay);
  thaw_job_end(j, retry ? THAW_WQ_RETRY_AFTER : THAW_WQ_SUCCESS, delay);
}

/* A refresh that failed leaves the cached image Ready and says why. The
 * cached digest still serves, so there is no hurry: the next try waits the
 * backoff's cap or the refresh interval, whichever is shorter (a 429's
 * Retry-After when longer), so an upstream that stays down is not asked,
 * patched about and evented every 2 s. */
void thaw_job_refresh_failed(job_t *j, const char *msg, long retry_after) {
  char buf[MESSAGE_MAX];
  snprintf(buf, sizeof buf, "refresh failed: %s", msg);
  cJSON *st = cJSON_CreateObject();
  if (st)
    thaw_job_add_message(st, buf);
  thaw_job_patch(j, st, 1);
  thaw_job_event(j, "Warning", "WarmFailed", buf);
  thaw_warn("refresh failed", "name", j->name, "message", msg);
  uint64_t delay = j->r->o.backoff_max_ms;
  if (j->r->cfg->refresh_interval_ms < delay)
    delay = j->r->cfg->refresh_interval_ms;
  if ((uint64_t)retry_after * 1000u > delay)
    delay = (uint64_t)retry_after * 1000u;
  thaw_job_not_before(j, delay);
  thaw_job_end(j, THAW_WQ_RETRY_AFTER, delay);
}

