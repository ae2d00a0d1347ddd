/* warm_cli.c - runs controller/warm on a loop for test/test_warm.py: warms
 * (or resolves) each IMAGE in turn, or all at once with --parallel, and
 * prints one JSON line per result. Exit 0 when every result is ok, 1 when
 * one failed, 2 on bad usage.
 *
 * usage: warm_cli --cache HOST:PORT [--insecure H1,H2] [--platforms P1,P2]
 *   [--creds USER:PASS] [--blob-concurrency N] [--resolve] [--parallel]
 *   [--learn DIGEST=REPO]... [--cancel-after MS] [--free-after MS] [--linger MS]
 *   [--cache-repo] IMAGE...
 * --cancel-after cancels the warms in flight after MS and starts no more;
 * --free-after frees the warmer with them in flight; --linger keeps the loop
 * (and the registry client) running MS longer after the last result, so
 * transfers a canceled warm failed to stop would land; --cache-repo only
 * prints thaw_warm_cache_repo() of each IMAGE. */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "error.h"
#include "warm.h"

typedef struct {
  const char *image;
  thaw_warm_t *warm; /* in flight */
  int started, results;
  long long pdone, ptotal;
  unsigned pcalls;
  int monotonic;
} job_t;

static uv_loop_t loop;
static thaw_warmer_t *warmer;
static job_t *jobs;
static int njobs, next_job, resolve, stopping, failed;
static thaw_regauth_creds_t creds;
static int have_creds;

static void start_next(void);

static void on_progress(long long done, long long total, void *data) {
  job_t *j = data;
  if (done < j->pdone || total < j->ptotal || done > total)
    j->monotonic = 0;
  j->pdone = done;
  j->ptotal = total;
  j->pcalls++;
}

static void on_done(const thaw_warm_result_t *r, void *data) {
  job_t *j = data;
  j->warm = NULL;
  j->results++;
  if (r->err)
    failed = 1;
  cJSON *o = cJSON_CreateObject();
  cJSON_AddStringToObject(o, "image", j->image);
  cJSON_AddStringToObject(o, "err", r->err ? thaw_err_name(r->err) : "OK");
  cJSON_AddStringToObject(o, "message", r->message);
  cJSON_AddStringToObject(o, "digest", r->digest);
  cJSON_AddStringToObject(o, "media_type", r->media_type ? r->media_type : "");
  cJSON_AddNumberToObject(o, "size_bytes", (double)r->size_bytes);
  cJSON_AddNumberToObject(o, "bytes_upstream", (double)r->bytes_upstream);
  cJSON_AddNumberToObject(o, "bytes_mounted", (double)r->bytes_mounted);
  cJSON_AddNumberToObject(o, "bytes_present", (double)r->bytes_present);
  cJSON_AddNumberToObject(o, "manifests", r->manifests);
  cJSON_AddNumberToObject(o, "blobs", r->blobs);
  cJSON_AddBoolToObject(o, "anonymous_refused", r->anonymous_refused);
  cJSON_AddBoolToObject(o, "upstream_failed", r->upstream_failed);
  cJSON_AddNumberToObject(o, "retry_after", r->retry_after);
  cJSON_AddNumberToObject(o, "progress_done", (double)j->pdone);
  cJSON_AddNumberToObject(o, "progress_total", (double)j->ptotal);
  cJSON_AddNumberToObject(o, "progress_calls", j->pcalls);
  cJSON_AddBoolToObject(o, "progress_monotonic", j->monotonic);
  cJSON_AddNumberToObject(o, "results", j->results);
  char *s = cJSON_PrintUnformatted(o);
  printf("%s\n", s);
  fflush(stdout);
  free(s);
  cJSON_Delete(o);
  start_next();
}

/* Starts the next job (all of them with --parallel, see main). */
static void start_next(void) {
  while (!stopping && warmer && next_job < njobs) {
    job_t *j = &jobs[next_job++];
    j->started = 1;
    thaw_warm_req_t req = {.image = j->image,
                           .creds = have_creds ? &creds : NULL,
                           .progress = on_progress,
                           .done = on_done,
                           .data = j};
    int rc = resolve ? thaw_warm_resolve(warmer, &req)
                     : thaw_warm_start(warmer, &req, &j->warm);
    if (rc) {
      printf("{\"image\":\"%s\",\"err\":\"%s\",\"message\":\"start\"}\n",
             j->image, thaw_err_name(rc));
      failed = 1;
      continue;
    }
    return;
  }
}

static void on_linger(uv_timer_t *t) { *(int *)t->data = 1; }

static void on_cancel_timer(uv_timer_t *t) {
  (void)t;
  stopping = 1;
  for (int i = 0; i < njobs; i++)
    if (jobs[i].warm)
      thaw_warm_cancel(jobs[i].warm);
}

static void on_free_timer(uv_timer_t *t) {
  (void)t;
  stopping = 1;
  thaw_warmer_t *w = warmer;
  warmer = NULL;
  thaw_warmer_free(w);
  for (int i = 0; i < njobs; i++)
    jobs[i].warm = NULL;
}

static int busy(void) {
  for (int i = 0; i < njobs; i++)
    if (jobs[i].started && !jobs[i].results)
      return 1;
  return !stopping && warmer && next_job < njobs;
}

/* Splits "a,b,c" in place into a NULL-ended array. */
static const char **split(char *s) {
  size_t n = 2;
  for (char *p = s; *p; p++)
    n += *p == ',';
  const char **v = calloc(n, sizeof *v);
  size_t i = 0;
  for (char *tok; (tok = strsep(&s, ","));)
    if (*tok)
      v[i++] = tok;
  return v;
}

static int usage(void) {
  fprintf(stderr, "usage: warm_cli --cache HOST:PORT [--insecure H1,H2] "
                  "[--platforms P1,P2] [--creds USER:PASS] "
                  "[--blob-concurrency N] [--resolve] [--parallel] "
                  "[--learn DIGEST=REPO]... [--cancel-after MS] "
                  "[--free-after MS] [--linger MS] [--cache-repo] IMAGE...\n");
  return 2;
}

int main(int argc, char **argv) {
  const char *cache = NULL;
  const char **insecure = NULL, **platforms = NULL;
  char *learn[64];
  int nlearn = 0, parallel = 0, only_repo = 0;
  unsigned conc = 0;
  long cancel_ms = -1, free_ms = -1, linger_ms = 0;
  jobs = calloc((size_t)argc, sizeof *jobs);
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    int more = i + 1 < argc;
    if (!strcmp(a, "--cache") && more)
      cache = argv[++i];
    else if (!strcmp(a, "--insecure") && more)
      insecure = split(argv[++i]);
    else if (!strcmp(a, "--platforms") && more)
      platforms = split(argv[++i]);
    else if (!strcmp(a, "--creds") && more) {
      char *c = argv[++i], *colon = strchr(c, ':');
      if (!colon)
        return usage();
      snprintf(creds.user, sizeof creds.user, "%.*s", (int)(colon - c), c);
      snprintf(creds.pass, sizeof creds.pass, "%s", colon + 1);
      have_creds = 1;
    } else if (!strcmp(a, "--blob-concurrency") && more)
      conc = (unsigned)strtoul(argv[++i], NULL, 10);
    else if (!strcmp(a, "--resolve"))
      resolve = 1;
    else if (!strcmp(a, "--parallel"))
      parallel = 1;
    else if (!strcmp(a, "--cache-repo"))
      only_repo = 1;
    else if (!strcmp(a, "--learn") && more && nlearn < 64)
      learn[nlearn++] = argv[++i];
    else if (!strcmp(a, "--cancel-after") && more)
      cancel_ms = strtol(argv[++i], NULL, 10);
    else if (!strcmp(a, "--free-after") && more)
      free_ms = strtol(argv[++i], NULL, 10);
    else if (!strcmp(a, "--linger") && more)
      linger_ms = strtol(argv[++i], NULL, 10);
    else if (a[0] == '-')
      return usage();
    else
      jobs[njobs++] = (job_t){.image = a, .monotonic = 1};
  }
  if (only_repo) {
    for (int i = 0; i < njobs; i++) {
      char buf[300];
      int rc = thaw_warm_cache_repo(jobs[i].image, buf, sizeof buf);
      printf("{\"image\":\"%s\",\"err\":\"%s\",\"cache_repo\":\"%s\"}\n",
             jobs[i].image, rc ? thaw_err_name(rc) : "OK", rc ? "" : buf);
    }
    free(jobs);
    return 0;
  }
  if (!cache || !njobs)
    return usage();

  thaw_http_t *http = NULL;
  thaw_registry_t *reg = NULL;
  uv_timer_t cancel_t, free_t;
  uv_loop_init(&loop);
  uv_timer_init(&loop, &cancel_t);
  uv_timer_init(&loop, &free_t);
  thaw_registry_opts_t ro = {.insecure = insecure};
  thaw_warmer_opts_t wo = {.cache_registry = cache,
                           .platforms = platforms,
                           .blob_concurrency = conc};
  int rc = thaw_http_new(&loop, &http);
  if (!rc)
    rc = thaw_registry_new(http, &ro, &reg);
  if (!rc)
    rc = thaw_warmer_new(reg, &wo, &warmer);
  if (rc) {
    fprintf(stderr, "warm_cli: %s\n", thaw_strerror(rc));
    return 1;
  }
  for (int i = 0; i < nlearn; i++) {
    char *eq = strchr(learn[i], '=');
    if (eq) {
      *eq = '\0';
      thaw_warmer_learn(warmer, learn[i], eq + 1);
    }
  }
  if (cancel_ms >= 0)
    uv_timer_start(&cancel_t, on_cancel_timer, (uint64_t)cancel_ms, 0);
  if (free_ms >= 0)
    uv_timer_start(&free_t, on_free_timer, (uint64_t)free_ms, 0);
  do
    start_next();
  while (parallel && next_job < njobs && !stopping);
  while (busy())
    uv_run(&loop, UV_RUN_ONCE);

  /* Every job reported exactly once, even those canceled mid-copy. */
  for (int i = 0; i < njobs; i++)
    if (jobs[i].started && jobs[i].results != 1) {
      fprintf(stderr, "warm_cli: %s reported %d times\n", jobs[i].image,
              jobs[i].results);
      failed = 2;
    }
  if (linger_ms > 0) { /* what a canceled warm left running would finish */
    uv_timer_t linger_t;
    int lingered = 0;
    uv_timer_init(&loop, &linger_t);
    linger_t.data = &lingered;
    uv_timer_start(&linger_t, on_linger, (uint64_t)linger_ms, 0);
    while (!lingered)
      uv_run(&loop, UV_RUN_ONCE);
    uv_close((uv_handle_t *)&linger_t, NULL);
  }
  thaw_warmer_free(warmer);
  thaw_registry_free(reg);
  thaw_http_free(http);
  uv_close((uv_handle_t *)&cancel_t, NULL);
  uv_close((uv_handle_t *)&free_t, NULL);
  uv_run(&loop, UV_RUN_DEFAULT);
  rc = uv_loop_close(&loop);
  memset(&creds, 0, sizeof creds);
  free(insecure);
  free(platforms);
  free(jobs);
  if (rc) {
    fprintf(stderr, "warm_cli: loop not empty at exit\n");
    return 2;
  }
  return failed;
}
