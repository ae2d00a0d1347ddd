/* gc_agent.h - thaw-registry-gc, the agent that runs distribution's
 * `registry garbage-collect CONFIG` beside the cache registry's storage,
 * one run at a time and only when asked (docs/design.md "Garbage
 * collection"). It never decides to collect by itself: the controller asks,
 * after it has stopped pushing.
 *
 * HTTP API (thaw_gc_agent_http, on a thaw_httpd_start_post() server):
 *   POST /gc   202 {"id":N,"startedAt":T} starts run N; 409 while a run is
 *              in flight (never two at once)
 *   GET  /gc   200 {"running":bool,"runs":N,"last":RUN|null}, RUN being
 *              {"id","result":"success"|"failure","startedAt","finishedAt",
 *              "bytesBefore","bytesAfter","blobsMarked","blobsDeleted",
 *              "manifestsDeleted","message"} (numbers null when unknown)
 *   GET  /healthz
 * and, on a port of its own (thaw_gc_agent_ops_http, GET only, so that
 * whoever may scrape cannot start a run): GET /metrics, /healthz, /readyz.
 * A run: measure the storage directory (when given), run the collector
 * (never --delete-untagged: distribution 2.8 deletes the children of a
 * multi-arch index with it), read its counts, measure again. */
#ifndef THAW_GC_AGENT_H
#define THAW_GC_AGENT_H

#include <stdint.h>
#include <uv.h>

#include "httpd.h"
#include "metrics.h"

typedef struct thaw_gc_agent thaw_gc_agent_t;

typedef struct {
  const char *config;          /* the registry's config.yml (required) */
  const char *registry_binary; /* NULL: "registry" (Debian: docker-registry) */
  const char *storage_dir;     /* filesystem root to measure; NULL: S3, or
                                  not measured */
  /* A run nobody has asked about (GET /gc) for this long is stopped: the
   * controller resumes pushes after 60 s without an answer, so an orphaned
   * run must be over before that. 0: never. */
  uint64_t orphan_timeout_ms;
  thaw_metrics_t *metrics;     /* thaw_registry_gc_* series; may be NULL */
} thaw_gc_agent_opts_t;

/* Strings are copied. Returns 0 and sets *out, or THAW_EINVAL/THAW_ENOMEM. */
int thaw_gc_agent_new(uv_loop_t *loop, const thaw_gc_agent_opts_t *o,
                      thaw_gc_agent_t **out);

/* The HTTP API above: a thaw_httpd_method_cb with the agent as data. */
void thaw_gc_agent_http(const char *method, const char *path,
                        thaw_httpd_reply_t *reply, void *agent);

/* /metrics, /healthz, /readyz: a thaw_httpd_handler_cb, agent as data. */
void thaw_gc_agent_ops_http(const char *path, thaw_httpd_reply_t *reply,
                            void *agent);

/* Starts a run. Returns 0, THAW_EEXIST while one is in flight, or
 * THAW_ENOMEM. */
int thaw_gc_agent_start(thaw_gc_agent_t *a);

/* 1 from thaw_gc_agent_start() until the run's result is recorded. */
int thaw_gc_agent_running(const thaw_gc_agent_t *a);

/* Stops: a collector in flight gets SIGTERM (an interrupted sweep only
 * leaves garbage for the next run) and `done` runs on the loop once it has
 * exited, or at once when none runs. Then free. */
void thaw_gc_agent_stop(thaw_gc_agent_t *a, void (*done)(void *data),
                        void *data);

/* Frees the agent; a collector still running is killed (SIGKILL). Run the
 * loop afterwards so handles close. NULL does nothing. */
void thaw_gc_agent_free(thaw_gc_agent_t *a);

/* --- the collector's output (pure; gc_agent_output.c) ------------------ */

typedef struct {
  long long blobs_marked, blobs_deleted, manifests_deleted;
} thaw_gc_counts_t;

/* Reads distribution's summary line "N blobs marked, M blobs and K
 * manifests eligible for deletion" (2.8 and 3.x). Returns 0 and fills
 * *out, or THAW_EPARSE for any other line. */
int thaw_gc_parse_summary(const char *line, thaw_gc_counts_t *out);

/* 1 when the collector's error says the storage holds nothing yet (a fresh
 * registry: "Path not found: /docker/registry/v2/repositories" or
 * ".../v2/blobs"): nothing to collect, not a failure. */
int thaw_gc_output_empty_storage(const char *err_text);

#endif
