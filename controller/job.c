/* job.c - one processing of one CachedImage (reconcile_internal.h): the
 * decision by phase, then the warm, or the refresh of a Ready tag (a HEAD
 * upstream; a new digest is warmed while the old one keeps serving). Life
 * cycle and writes are in job_status.c, credentials in job_creds.c. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "clock.h"
#include "error.h"
#include "log.h"
#include "phase.h"
#include "reconcile_internal.h"

#define PRIVATE_OFF                                                           \
  "private image: the registry refused anonymous pulls and caching private " \
  "images is off (--allow-private)"

#define CACHE_FULL_RETRY_MS 5000 /* a cache-full Pending image looks again */

static int is_tag_ref(const job_t *j) { return j->ref.digest_len == 0; }

/* --- warm and refresh ------------------------------------------------- */

static void on_progress(long long done, long long total, void *data) {
  job_t *j = data;
  uint64_t now = thaw_job_now_ms();
  if (now - j->progress_ms < 1000) /* status.progress at most once a second */
    return;
  j->progress_ms = now;
  cJSON *st = cJSON_CreateObject();
  cJSON *p = st ? cJSON_AddObjectToObject(st, "progress") : NULL;
  if (p) {
    cJSON_AddNumberToObject(p, "doneBytes", (double)done);
    cJSON_AddNumberToObject(p, "totalBytes", (double)total);
  }
  thaw_job_patch(j, st, 0);
}

static void count_warm(job_t *j, const thaw_warm_result_t *res) {
  thaw_reconciler_t *r = j->r;
  const char *result[] = {res->err == 0 ? "success" : "failure"};
  thaw_metric_inc(r->m_total, result);
  thaw_metric_observe(r->m_duration, NULL,
                      (double)(thaw_job_now_ms() - j->started_ms) / 1000.0);
  const char *up[] = {"upstream"}, *mo[] = {"mounted"}, *pr[] = {"present"};
  thaw_metric_add(r->m_bytes, up, (double)res->bytes_upstream);
  thaw_metric_add(r->m_bytes, mo, (double)res->bytes_mounted);
  thaw_metric_add(r->m_bytes, pr, (double)res->bytes_present);
}

static void on_warmed(const thaw_warm_result_t *res, void *data) {
  job_t *j = data;
  thaw_reconciler_t *r = j->r;
  j->warm = NULL;
  j->refs--;
  r->warming--;
  thaw_reconciler_warm_ended(r);
  if (res->err == THAW_ECANCELED || j->canceled) {
    thaw_job_end(j, THAW_WQ_SUCCESS, 0); /* a restart or the new leader resumes */
    return;
  }
  count_warm(j, res);
  if (res->err != 0) {
    if (j->refresh)
      thaw_job_refresh_failed(j, res->message, res->retry_after);
    else if (res->anonymous_refused && !j->had_creds && !r->cfg->allow_private)
      thaw_job_fail(j, PRIVATE_OFF, 0, 0, 1);
    else if (res->anonymous_refused && !j->had_creds)
      /* Known private now: the next attempt looks for pull secrets. */
      thaw_job_fail(j, "private image: the registry refused anonymous pulls; "
              "retrying with pull secrets",
           0, 1, 1);
    else
      thaw_job_fail(j, res->message, res->retry_after, 1, res->anonymous_refused);
    return;
  }
  time_t now = time(NULL);
  cJSON *st = cJSON_CreateObject();
  if (st) {
    cJSON_AddStringToObject(st, "phase", "Ready");
    cJSON_AddStringToObject(st, "digest", res->digest);
    cJSON_AddStringToObject(st, "upstreamDigest", res->upstream_digest);
    cJSON_AddNumberToObject(st, "sizeBytes", (double)res->size_bytes);
    thaw_cirec_add_time(st, "cachedAt", now);
    thaw_cirec_add_time(st, "lastCheckedAt", now);
    cJSON_AddNullToObject(st, "progress");
    cJSON_AddNullToObject(st, "message");
    cJSON_AddNumberToObject(st, "attempts", 0);
    if (res->anonymous_refused || (j->flags & THAW_CI_PRIVATE))
      cJSON_AddTrueToObject(st, "private");
    thaw_cirec_add_ready(st, 1, j->refresh ? "Refreshed" : "Cached", "");
  }
  thaw_job_patch(j, st, 1);
  char msg[1200];
  snprintf(msg, sizeof msg,
           "%s %s as %s: %lld bytes (%lld from upstream, %lld mounted, %lld "
           "already cached)",
           j->refresh ? "refreshed" : "cached", j->ref.str, res->digest,
           res->size_bytes, res->bytes_upstream, res->bytes_mounted,
           res->bytes_present);
  thaw_job_event(j, "Normal", j->refresh ? "Refreshed" : "Cached", msg);
  thaw_info(j->refresh ? "refreshed" : "cached", "name", j->name, "image",
            j->ref.str, "digest", res->digest);
  if (is_tag_ref(j))
    thaw_job_end(j, THAW_WQ_RETRY_AFTER, r->cfg->refresh_interval_ms);
  else
    thaw_job_end(j, THAW_WQ_SUCCESS, 0);
}

/* A private image (known so, or warmed with pull secrets) is copied under
 * private/ only. */
static int job_private(const job_t *j, const thaw_regauth_creds_t *creds) {
  return (j->flags & THAW_CI_PRIVATE) || creds != NULL;
}

static void begin_warm(job_t *j, const thaw_regauth_creds_t *creds) {
  thaw_reconciler_t *r = j->r;
  char repo[THAW_IMGREF_STR_MAX + 1];
  if (r->paused || /* garbage collection: no push now */
      (r->hooks.may_push &&
       thaw_warm_cache_repo_of(j->ref.str, job_private(j, creds), repo,
                               sizeof repo) == 0 &&
       !r->hooks.may_push(repo, r->hooks.data))) {
    thaw_job_end(j, THAW_WQ_RETRY_AFTER, 1000);
    return;
  }
  if (!j->refresh) {
    cJSON *st = cJSON_CreateObject();
    if (st) {
      cJSON_AddStringToObject(st, "phase", "Warming");
      cJSON_AddNullToObject(st, "message");
      cJSON *p = cJSON_AddObjectToObject(st, "progress");
      if (p) {
        cJSON_AddNumberToObject(p, "doneBytes", 0);
        cJSON_AddNumberToObject(p, "totalBytes", 0);
      }
      thaw_cirec_add_ready(st, 0, "Warming", "");
    }
    thaw_job_patch(j, st, 0);
    char msg[600];
    snprintf(msg, sizeof msg, "%s %s", j->phase == THAW_CI_WARMING
                                           ? "resuming the warm of"
                                           : "warming",
             j->ref.str);
    thaw_job_event(j, "Normal", "Warming", msg);
  }
  j->progress_ms = thaw_job_now_ms();
  thaw_warm_req_t req = {.image = j->ref.str, .creds = creds,
                         .private_ = job_private(j, creds),
                         .progress = on_progress, .done = on_warmed,
                         .data = j};
  int rc = thaw_warm_start(r->warmer, &req, &j->warm);
  if (rc != 0) {
    char msg[128];
    snprintf(msg, sizeof msg, "cannot start the warm: %s", thaw_strerror(rc));
    if (j->refresh)
      thaw_job_refresh_failed(j, msg, 0);
    else
      thaw_job_fail(j, msg, 0, 1, 0);
    return;
  }
  j->refs++;
  r->warming++;
}

static void on_resolved(const thaw_warm_result_t *res, void *data) {
  job_t *j = data;
  j->refs--;
  if (res->err == THAW_ECANCELED || j->canceled) {
    thaw_job_end(j, THAW_WQ_SUCCESS, 0);
    return;
  }
  if (res->err != 0) {
    thaw_job_refresh_failed(j, res->message, res->retry_after);
    return;
  }
  thaw_reconciler_t *r = j->r;
  int absent = r->hooks.absent && r->hooks.absent(j->name, r->hooks.data);
  if (strcmp(res->digest, j->upstream) == 0 && !absent) {
    cJSON *st = cJSON_CreateObject();
    if (st) {
      thaw_cirec_add_time(st, "lastCheckedAt", time(NULL));
      cJSON_AddStringToObject(st, "upstreamDigest", res->digest);
      cJSON_AddNullToObject(st, "message");
    }
    thaw_job_patch(j, st, 1);
    thaw_job_end(j, THAW_WQ_RETRY_AFTER, j->r->cfg->refresh_interval_ms);
    return;
  }
  char msg[1400];
  if (strcmp(res->digest, j->upstream) == 0) {
    snprintf(msg, sizeof msg, "%s is missing from the cache: warming it again",
             j->ref.str);
    thaw_info("missing from the cache", "name", j->name, "digest",
              res->digest);
  } else {
    snprintf(msg, sizeof msg, "%s moved upstream from %s to %s: warming it",
             j->ref.str, j->upstream, res->digest);
    thaw_info("tag moved upstream", "name", j->name, "from", j->upstream,
              "to", res->digest);
  }
  thaw_job_event(j, "Normal", "Warming", msg);
  j->refresh = 1;
  begin_warm(j, j->had_creds ? &j->creds : NULL);
}

/* --- the decision ----------------------------------------------------- */

/* Runs the warm (or the refresh HEAD) with `creds` (NULL: anonymous). */
static void next_step(job_t *j, const thaw_regauth_creds_t *creds) {
  if (j->phase != THAW_CI_READY) {
    begin_warm(j, creds);
    return;
  }
  thaw_warm_req_t req = {.image = j->ref.str, .creds = creds,
                         .done = on_resolved, .data = j};
  int rc = thaw_warm_resolve(j->r->warmer, &req);
  if (rc != 0) {
    thaw_job_refresh_failed(j, thaw_strerror(rc), 0);
    return;
  }
  j->refs++;
}

/* Stays Pending: pods keep pulling from upstream; the warm waits for
 * space (the lifecycle evicts what it can). */
static void wait_room(job_t *j, const char *why) {
  if (j->phase != THAW_CI_PENDING || !(j->flags & THAW_CI_FULL)) {
    cJSON *st = cJSON_CreateObject();
    if (st) {
      cJSON_AddStringToObject(st, "phase", "Pending");
      thaw_job_add_message(st, why);
      cJSON_AddNullToObject(st, "progress");
      thaw_cirec_add_ready(st, 0, "CacheFull", why);
    }
    thaw_job_patch(j, st, 1);
    thaw_job_event(j, "Warning", "CacheFull", why);
  }
  thaw_job_end(j, THAW_WQ_RETRY_AFTER, CACHE_FULL_RETRY_MS);
}

/* Warm or refresh: anonymous, or with the pull secrets of a private image
 * (job_creds.c), then next_step. */
static void start_copy(job_t *j, const thaw_cirec_t *c) {
  thaw_reconciler_t *r = j->r;
  if (!(c->flags & THAW_CI_PRIVATE)) {
    next_step(j, NULL);
    return;
  }
  if (!r->cfg->allow_private) {
    if (j->phase == THAW_CI_READY)
      next_step(j, NULL); /* cached before; refresh as far as allowed */
    else
      thaw_job_fail(j, PRIVATE_OFF, 0, 0, 1);
    return;
  }
  if (thaw_job_find_creds(j, c, next_step) != 0) {
    const char *msg = "private image: no pull secret in spec.pullSecrets from "
                      "a namespace labelled thaw.dev/cache-private=true";
    if (j->phase == THAW_CI_READY)
      thaw_job_refresh_failed(j, msg, 0);
    else
      thaw_job_fail(j, msg, 0, 1, 1);
  }
}

/* The PROCESS rows of the phase table (phase.h). */
void thaw_job_run(job_t *j) {
  thaw_reconciler_t *r = j->r;
  uint64_t rv;
  const thaw_cirec_t *c = thaw_informer_get(r->inf, j->name, &rv);
  if (thaw_imgref_parse(c->image, strlen(c->image), &j->ref) != 0) {
    char msg[200];
    snprintf(msg, sizeof msg, "spec.image does not parse: %s", j->ref.err);
    if (j->phase != THAW_CI_FAILED)
      thaw_job_fail(j, msg, 0, 0, 0);
    else
      thaw_job_end(j, THAW_WQ_SUCCESS, 0);
    return;
  }
  uint64_t wait_until = 0, wall = thaw_wall_ms();
  thaw_store_get(r->not_before, j->name, &wait_until);
  if (wall < wait_until && j->phase != THAW_CI_EXPIRING) {
    thaw_job_end(j, THAW_WQ_RETRY_AFTER, wait_until - wall);
    return;
  }
  /* When the backoff (Failed) or the refresh interval (Ready) is over. */
  uint64_t at = (uint64_t)time(NULL) * 1000u, due = 0;
  if (c->last_checked > 0)
    due = (uint64_t)c->last_checked * 1000u +
          (j->phase == THAW_CI_READY ? r->cfg->refresh_interval_ms
                                     : thaw_job_backoff_ms(r, c->attempts));
  char why[300] = "";
  thaw_phase_facts_t f = {
      .phase = j->phase,
      .tag = is_tag_ref(j),
      .room = r->hooks.has_room == NULL ||
              r->hooks.has_room(why, sizeof why, r->hooks.data),
      .due = at >= due,
  };
  switch (thaw_phase_decide(THAW_EV_PROCESS, &f)) {
  case THAW_ACT_WAIT:
    thaw_job_end(j, THAW_WQ_RETRY_AFTER, due - at);
    return;
  case THAW_ACT_WAIT_ROOM:
    wait_room(j, why);
    return;
  case THAW_ACT_WARM:
  case THAW_ACT_REFRESH:
    start_copy(j, c);
    return;
  default: /* Ready digests never change; Expiring is the lifecycle's */
    thaw_job_end(j, THAW_WQ_SUCCESS, 0);
    return;
  }
}
