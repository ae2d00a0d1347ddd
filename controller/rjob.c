/* rjob.c - one processing of one CachedImage (reconcile_internal.h): the
 * decision by phase, credentials for private images, the warm or refresh,
 * and the status writes, which go out one at a time so that a late
 * progress patch can never land after the final one. The job holds the work
 * queue's token to the end, so no object is warmed twice at once. */
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "error.h"
#include "events.h"
#include "log.h"
#include "pullcreds.h"
#include "reconcile_internal.h"

#define LABEL_CACHE_PRIVATE "thaw.dev/cache-private"
#define MESSAGE_MAX 1024 /* status.message maxLength in the CRD */
#define PRIVATE_OFF                                                           \
  "private image: the registry refused anonymous pulls and caching private " \
  "images is off (--allow-private)"

static uint64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

uint64_t thaw_job_backoff_ms(const thaw_reconciler_t *r, uint32_t attempts) {
  return thaw_backoff_delay_ms(r->o.backoff_base_ms, r->o.backoff_max_ms,
                               attempts > 0 ? attempts - 1 : 0);
}

static int is_tag_ref(const job_t *j) { return j->ref.digest_len == 0; }

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
  j->started_ms = now_ms();
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

static void job_end(job_t *j, thaw_workqueue_result_t result, uint64_t after) {
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

static void send_patch(job_t *j, cJSON *status, int final);

static void on_written(const thaw_kube_result_t *res, void *data) {
  job_t *j = data;
  j->refs--;
  j->writing = 0;
  if (res->err != 0 && res->err != THAW_ECANCELED)
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
    send_patch(j, next, j->queued_final);
    return;
  }
  maybe_complete(j);
}

/* Takes `status` (a merge patch of .status). The final write replaces
 * whatever is queued; a progress write replaces a queued progress write. */
static void send_patch(job_t *j, cJSON *status, int final) {
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

static void add_time(cJSON *o, const char *key, time_t t) {
  char buf[32];
  thaw_rfc3339(t, buf, sizeof buf);
  cJSON_AddStringToObject(o, key, buf);
}

static void add_message(cJSON *o, const char *msg) {
  if (msg == NULL || *msg == '\0') {
    cJSON_AddNullToObject(o, "message");
    return;
  }
  char buf[MESSAGE_MAX + 1];
  snprintf(buf, sizeof buf, "%s", msg);
  cJSON_AddStringToObject(o, "message", buf);
}

/* conditions: [the Ready condition]; a merge patch replaces the list. */
static void add_ready(cJSON *o, int ready, const char *reason,
                      const char *msg) {
  cJSON *list = cJSON_AddArrayToObject(o, "conditions");
  cJSON *c = cJSON_CreateObject();
  if (list == NULL || c == NULL) {
    cJSON_Delete(c);
    return;
  }
  cJSON_AddItemToArray(list, c);
  cJSON_AddStringToObject(c, "type", "Ready");
  cJSON_AddStringToObject(c, "status", ready ? "True" : "False");
  cJSON_AddStringToObject(c, "reason", reason);
  char buf[MESSAGE_MAX + 1];
  snprintf(buf, sizeof buf, "%s", msg ? msg : "");
  cJSON_AddStringToObject(c, "message", buf);
  add_time(c, "lastTransitionTime", time(NULL));
}

static void event(job_t *j, const char *type, const char *reason,
                  const char *msg) {
  thaw_events_emit(j->r->events, j->name, j->uid, type, reason, msg);
}

/* Failed with `msg`; retried after the backoff (or retry_after seconds,
 * whichever is longer), or not at all when `retry` is 0. */
static void fail(job_t *j, const char *msg, long retry_after, int retry,
                 int private_) {
  thaw_reconciler_t *r = j->r;
  uint32_t attempts = j->attempts + 1;
  cJSON *st = cJSON_CreateObject();
  if (st) {
    cJSON_AddStringToObject(st, "phase", "Failed");
    add_message(st, msg);
    cJSON_AddNumberToObject(st, "attempts", attempts);
    add_time(st, "lastCheckedAt", time(NULL));
    cJSON_AddNullToObject(st, "progress");
    if (private_)
      cJSON_AddTrueToObject(st, "private");
    add_ready(st, 0, "WarmFailed", msg);
  }
  send_patch(j, st, 1);
  event(j, "Warning", "WarmFailed", msg);
  thaw_warn("warm failed", "name", j->name, "image", j->ref.str, "message",
            msg);
  uint64_t delay = thaw_job_backoff_ms(r, attempts);
  if ((uint64_t)retry_after * 1000u > delay)
    delay = (uint64_t)retry_after * 1000u;
  job_end(j, retry ? THAW_WQ_RETRY_AFTER : THAW_WQ_SUCCESS, delay);
}

/* A refresh that failed leaves the cached image Ready and says why. */
static void refresh_failed(job_t *j, const char *msg, long retry_after) {
  char buf[MESSAGE_MAX];
  snprintf(buf, sizeof buf, "refresh failed: %s", msg);
  cJSON *st = cJSON_CreateObject();
  if (st)
    add_message(st, buf);
  send_patch(j, st, 1);
  event(j, "Warning", "WarmFailed", buf);
  thaw_warn("refresh failed", "name", j->name, "message", msg);
  uint64_t delay = thaw_job_backoff_ms(j->r, 1);
  if ((uint64_t)retry_after * 1000u > delay)
    delay = (uint64_t)retry_after * 1000u;
  job_end(j, THAW_WQ_RETRY_AFTER, delay);
}

/* --- warm and refresh ------------------------------------------------- */

static void on_progress(long long done, long long total, void *data) {
  job_t *j = data;
  uint64_t now = now_ms();
  if (now - j->progress_ms < 1000) /* status.progress at most once a second */
    return;
  j->progress_ms = now;
  cJSON *st = cJSON_CreateObject();
  cJSON *p = st ? cJSON_AddObjectToObject(st, "progress") : NULL;
  if (p) {
    cJSON_AddNumberToObject(p, "doneBytes", (double)done);
    cJSON_AddNumberToObject(p, "totalBytes", (double)total);
  }
  send_patch(j, st, 0);
}

static void count_warm(job_t *j, const thaw_warm_result_t *res) {
  thaw_reconciler_t *r = j->r;
  const char *result[] = {res->err == 0 ? "success" : "failure"};
  thaw_metric_inc(r->m_total, result);
  thaw_metric_observe(r->m_duration, NULL,
                      (double)(now_ms() - j->started_ms) / 1000.0);
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
  if (res->err == THAW_ECANCELED || j->canceled) {
    job_end(j, THAW_WQ_SUCCESS, 0); /* a restart or the new leader resumes */
    return;
  }
  count_warm(j, res);
  if (res->err != 0) {
    if (j->refresh)
      refresh_failed(j, res->message, res->retry_after);
    else if (res->anonymous_refused && !j->had_creds && !r->cfg->allow_private)
      fail(j, PRIVATE_OFF, 0, 0, 1);
    else if (res->anonymous_refused && !j->had_creds)
      /* Known private now: the next attempt looks for pull secrets. */
      fail(j, "private image: the registry refused anonymous pulls; "
              "retrying with pull secrets",
           0, 1, 1);
    else
      fail(j, res->message, res->retry_after, 1, res->anonymous_refused);
    return;
  }
  time_t now = time(NULL);
  cJSON *st = cJSON_CreateObject();
  if (st) {
    cJSON_AddStringToObject(st, "phase", "Ready");
    cJSON_AddStringToObject(st, "digest", res->digest);
    cJSON_AddStringToObject(st, "upstreamDigest", res->upstream_digest);
    cJSON_AddNumberToObject(st, "sizeBytes", (double)res->size_bytes);
    add_time(st, "cachedAt", now);
    add_time(st, "lastCheckedAt", now);
    cJSON_AddNullToObject(st, "progress");
    cJSON_AddNullToObject(st, "message");
    cJSON_AddNumberToObject(st, "attempts", 0);
    if (res->anonymous_refused || (j->flags & THAW_CI_PRIVATE))
      cJSON_AddTrueToObject(st, "private");
    add_ready(st, 1, j->refresh ? "Refreshed" : "Cached", "");
  }
  send_patch(j, st, 1);
  char msg[1200];
  snprintf(msg, sizeof msg,
           "%s %s as %s: %lld bytes (%lld from upstream, %lld mounted, %lld "
           "already cached)",
           j->refresh ? "refreshed" : "cached", j->ref.str, res->digest,
           res->size_bytes, res->bytes_upstream, res->bytes_mounted,
           res->bytes_present);
  event(j, "Normal", j->refresh ? "Refreshed" : "Cached", msg);
  thaw_info(j->refresh ? "refreshed" : "cached", "name", j->name, "image",
            j->ref.str, "digest", res->digest);
  if (is_tag_ref(j))
    job_end(j, THAW_WQ_RETRY_AFTER, r->cfg->refresh_interval_ms);
  else
    job_end(j, THAW_WQ_SUCCESS, 0);
}

static void begin_warm(job_t *j, const thaw_regauth_creds_t *creds) {
  thaw_reconciler_t *r = j->r;
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
      add_ready(st, 0, "Warming", "");
    }
    send_patch(j, st, 0);
    char msg[600];
    snprintf(msg, sizeof msg, "%s %s", j->phase == THAW_CI_WARMING
                                           ? "resuming the warm of"
                                           : "warming",
             j->ref.str);
    event(j, "Normal", "Warming", msg);
  }
  j->progress_ms = now_ms();
  thaw_warm_req_t req = {.image = j->ref.str, .creds = creds,
                         .progress = on_progress, .done = on_warmed,
                         .data = j};
  int rc = thaw_warm_start(r->warmer, &req, &j->warm);
  if (rc != 0) {
    char msg[128];
    snprintf(msg, sizeof msg, "cannot start the warm: %s", thaw_strerror(rc));
    if (j->refresh)
      refresh_failed(j, msg, 0);
    else
      fail(j, msg, 0, 1, 0);
    return;
  }
  j->refs++;
  r->warming++;
}

static void on_resolved(const thaw_warm_result_t *res, void *data) {
  job_t *j = data;
  j->refs--;
  if (res->err == THAW_ECANCELED || j->canceled) {
    job_end(j, THAW_WQ_SUCCESS, 0);
    return;
  }
  if (res->err != 0) {
    refresh_failed(j, res->message, res->retry_after);
    return;
  }
  if (strcmp(res->digest, j->upstream) == 0) {
    cJSON *st = cJSON_CreateObject();
    if (st) {
      add_time(st, "lastCheckedAt", time(NULL));
      cJSON_AddStringToObject(st, "upstreamDigest", res->digest);
      cJSON_AddNullToObject(st, "message");
    }
    send_patch(j, st, 1);
    job_end(j, THAW_WQ_RETRY_AFTER, j->r->cfg->refresh_interval_ms);
    return;
  }
  char msg[1400];
  snprintf(msg, sizeof msg, "%s moved upstream from %s to %s: warming it",
           j->ref.str, j->upstream, res->digest);
  event(j, "Normal", "Warming", msg);
  thaw_info("tag moved upstream", "name", j->name, "from", j->upstream, "to",
            res->digest);
  j->refresh = 1;
  begin_warm(j, j->had_creds ? &j->creds : NULL);
}

/* --- credentials ------------------------------------------------------ */

static void next_step(job_t *j, const thaw_regauth_creds_t *creds);

static void on_creds(int err, const thaw_regauth_creds_t *creds,
                     const char *message, void *data) {
  job_t *j = data;
  j->refs--;
  if (err == THAW_ECANCELED || j->canceled) {
    job_end(j, THAW_WQ_SUCCESS, 0);
    return;
  }
  if (err != 0) {
    if (j->phase == THAW_CI_READY)
      refresh_failed(j, message, 0);
    else
      fail(j, message, 0, 1, 1);
    return;
  }
  j->had_creds = 1;
  j->creds = *creds; /* a refresh that finds a new digest warms with them */
  next_step(j, &j->creds);
}

static void add_secret(job_t *j, const char *ns_name, int from_pods) {
  if (j->n_secrets >= sizeof j->secrets / sizeof j->secrets[0])
    return;
  for (size_t i = 0; i < j->n_secrets; i++)
    if (strcmp(j->secrets[i], ns_name) == 0)
      return;
  char *s = strdup(ns_name);
  if (s == NULL)
    return;
  j->secrets[j->n_secrets++] = s;
  j->secrets_from_pods |= from_pods;
}

static void on_pod_secret(const char *ns, const char *name, void *data) {
  job_t *j = data;
  char buf[320];
  snprintf(buf, sizeof buf, "%s/%s", ns, name);
  add_secret(j, buf, 1);
}

static void on_spec_written(const thaw_kube_result_t *res, void *data) {
  (void)data; /* NULL: the job may be gone */
  if (res->err != 0 && res->err != THAW_ECANCELED)
    thaw_warn("spec.pullSecrets not written", "error", thaw_err_name(res->err),
              "message", res->message);
}

/* spec.pullSecrets from what pods use, so the choice is visible and
 * survives a restart. Fire and forget: the next attempt reads it back. */
static void write_spec_secrets(job_t *j) {
  cJSON *patch = cJSON_CreateObject();
  cJSON *spec = patch ? cJSON_AddObjectToObject(patch, "spec") : NULL;
  cJSON *list = spec ? cJSON_AddArrayToObject(spec, "pullSecrets") : NULL;
  for (size_t i = 0; list && i < j->n_secrets; i++) {
    cJSON *e = cJSON_CreateObject();
    char *slash = strchr(j->secrets[i], '/');
    if (e == NULL || slash == NULL) {
      cJSON_Delete(e);
      continue;
    }
    *slash = '\0';
    cJSON_AddStringToObject(e, "namespace", j->secrets[i]);
    cJSON_AddStringToObject(e, "name", slash + 1);
    *slash = '/';
    cJSON_AddItemToArray(list, e);
  }
  thaw_kube_opts_t o = {.name = j->name, .field_manager = "thaw-controller"};
  if (list)
    thaw_kube_merge_patch(j->r->o.kube, &thaw_kube_cachedimages, &o, patch,
                          on_spec_written, NULL);
  cJSON_Delete(patch);
}

/* The private path: usable secrets are those of spec.pullSecrets in
 * namespaces labelled cache-private; without any, those pods use. */
static int find_creds(job_t *j, const thaw_cirec_t *c) {
  thaw_reconciler_t *r = j->r;
  const char *p = c->pull_secrets;
  for (unsigned i = 0; i < c->n_secrets; i++, p += strlen(p) + 1) {
    char ns[64];
    const char *slash = strchr(p, '/');
    size_t n = slash ? (size_t)(slash - p) : 0;
    if (n == 0 || n >= sizeof ns)
      continue;
    memcpy(ns, p, n);
    ns[n] = '\0';
    if (r->o.sources &&
        thaw_sources_ns_has_label(r->o.sources, ns, LABEL_CACHE_PRIVATE,
                                  "true"))
      add_secret(j, p, 0);
  }
  if (j->n_secrets == 0 && c->n_secrets == 0 && r->o.sources)
    thaw_sources_pull_secrets(r->o.sources, j->ref.str, on_pod_secret, j);
  if (j->n_secrets == 0)
    return THAW_ENOENT;
  if (j->secrets_from_pods)
    write_spec_secrets(j);
  char host[THAW_IMGREF_STR_MAX + 1];
  snprintf(host, sizeof host, "%.*s", (int)j->ref.host_len, j->ref.str);
  int rc = thaw_pullcreds_fetch(r->o.kube, host,
                                (const char *const *)j->secrets, j->n_secrets,
                                on_creds, j);
  if (rc == 0)
    j->refs++;
  return rc;
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
    refresh_failed(j, thaw_strerror(rc), 0);
    return;
  }
  j->refs++;
}

void thaw_job_run(job_t *j) {
  thaw_reconciler_t *r = j->r;
  uint64_t rv;
  const thaw_cirec_t *c = thaw_informer_get(r->inf, j->name, &rv);
  if (thaw_imgref_parse(c->image, strlen(c->image), &j->ref) != 0) {
    char msg[200];
    snprintf(msg, sizeof msg, "spec.image does not parse: %s", j->ref.err);
    if (j->phase != THAW_CI_FAILED)
      fail(j, msg, 0, 0, 0);
    else
      job_end(j, THAW_WQ_SUCCESS, 0);
    return;
  }
  time_t now = time(NULL);
  switch (j->phase) {
  case THAW_CI_EXPIRING:
    job_end(j, THAW_WQ_SUCCESS, 0); /* the lifecycle's, not ours */
    return;
  case THAW_CI_READY: {
    if (!is_tag_ref(j)) {
      job_end(j, THAW_WQ_SUCCESS, 0); /* a digest never changes */
      return;
    }
    uint64_t due = (uint64_t)c->last_checked * 1000u + r->cfg->refresh_interval_ms;
    uint64_t at = (uint64_t)now * 1000u;
    if (c->last_checked > 0 && at < due) {
      job_end(j, THAW_WQ_RETRY_AFTER, due - at);
      return;
    }
    break;
  }
  case THAW_CI_FAILED: {
    uint64_t due = (uint64_t)c->last_checked * 1000u +
                   thaw_job_backoff_ms(r, c->attempts);
    uint64_t at = (uint64_t)now * 1000u;
    if (c->last_checked > 0 && at < due) {
      job_end(j, THAW_WQ_RETRY_AFTER, due - at);
      return;
    }
    break;
  }
  default:
    break;
  }
  if (!(c->flags & THAW_CI_PRIVATE)) {
    next_step(j, NULL);
    return;
  }
  if (!r->cfg->allow_private) {
    if (j->phase == THAW_CI_READY)
      next_step(j, NULL); /* cached before; refresh as far as allowed */
    else
      fail(j, PRIVATE_OFF, 0, 0, 1);
    return;
  }
  if (find_creds(j, c) != 0) {
    const char *msg = "private image: no pull secret in spec.pullSecrets from "
                      "a namespace labelled thaw.dev/cache-private=true";
    if (j->phase == THAW_CI_READY)
      refresh_failed(j, msg, 0);
    else
      fail(j, msg, 0, 1, 1);
  }
}
