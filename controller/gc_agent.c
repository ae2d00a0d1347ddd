/* gc_agent.c - thaw-registry-gc's runs (gc_agent.h): one at a time, each a
 * walk of the storage directory (in the thread pool, so the API keeps
 * answering), the collector as a child process whose output is read line by
 * line (it prints a line per manifest and blob: never held whole), and a
 * walk again; the HTTP API; the thaw_registry_gc_* metrics. */
#include "gc_agent.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "error.h"
#include "log.h"

#define LINE_MAX_BYTES 1024 /* an output line longer than this is cut */
#define ERR_TAIL 400        /* last bytes of the collector's stderr kept */
#define WALK_DEPTH_MAX 64   /* distribution's tree is about 12 deep */
#define TICK_MS 1000        /* the orphan watchdog */
#define KILL_AFTER_MS 5000  /* SIGTERM, then SIGKILL */

enum phase { P_IDLE, P_MEASURE_BEFORE, P_COLLECT, P_MEASURE_AFTER };
enum { OPEN_PROC = 1, OPEN_OUT = 2, OPEN_ERR = 4, OPEN_TICK = 8 };

typedef struct {
  unsigned long long id;
  int ok;
  char started[32], finished[32];
  uint64_t started_ms;                 /* uv_now, for the duration */
  long long bytes_before, bytes_after; /* -1: not measured */
  thaw_gc_counts_t counts;
  int have_counts;
  char message[512];
} run_t;

struct thaw_gc_agent {
  uv_loop_t *loop;
  char *config, *binary, *storage_dir;
  uint64_t orphan_timeout_ms;
  enum phase phase;
  unsigned long long runs;
  run_t cur, last;
  int have_last;
  uint64_t last_poll_ms;     /* the last POST or GET /gc */
  int stopping_run;          /* the run is being stopped ... */
  uint64_t stop_at_ms;
  char stop_reason[200];     /* ... for this reason */

  /* the collector */
  uv_process_t proc;
  uv_pipe_t out, err;
  int child_alive, pending;  /* pending: exit, stdout EOF, stderr EOF */
  int64_t exit_status;
  int term_signal;
  char line[LINE_MAX_BYTES + 1];
  size_t line_len;
  int line_cut;
  char err_tail[ERR_TAIL + 1];
  size_t err_len;

  /* the walk */
  uv_work_t work;
  long long walked;
  int walk_errno;

  char rbuf[16384];          /* each read is consumed before the next */

  uv_timer_t tick;
  unsigned open;             /* OPEN_* handles not yet closed */
  int refs;                  /* open handles and a walk in flight */
  int freeing;
  void (*stop_done)(void *);
  void *stop_data;

  thaw_metrics_t *metrics_registry; /* rendered on /metrics; may be NULL */
  thaw_metric_t *m_runs, *m_running, *m_blobs, *m_bytes, *m_duration;
};

/* --- time, memory ------------------------------------------------------ */

/* RFC 3339 UTC with microseconds, 2024-01-01T00:00:00.123456Z: a run's
 * bounds, to compare with request logs of the registry. */
static void now_rfc3339(char *buf, size_t cap) {
  struct timeval tv;
  struct tm tm;
  gettimeofday(&tv, NULL);
  gmtime_r(&tv.tv_sec, &tm);
  size_t n = strftime(buf, cap, "%Y-%m-%dT%H:%M:%S", &tm);
  snprintf(buf + n, cap - n, ".%06dZ", (int)tv.tv_usec);
}

static void unref(thaw_gc_agent_t *a) {
  if (--a->refs > 0 || !a->freeing)
    return;
  free(a->config);
  free(a->binary);
  free(a->storage_dir);
  free(a);
}

static void on_closed(uv_handle_t *h) { unref(h->data); }

static void close_handle(thaw_gc_agent_t *a, uv_handle_t *h, unsigned bit) {
  if (!(a->open & bit))
    return;
  a->open &= ~bit;
  h->data = a;
  uv_close(h, on_closed);
}

/* --- the end of a run -------------------------------------------------- */

static void finish(thaw_gc_agent_t *a) {
  run_t *r = &a->cur;
  now_rfc3339(r->finished, sizeof r->finished);
  a->last = *r;
  a->have_last = 1;
  a->phase = P_IDLE;
  a->stopping_run = 0;
  uv_timer_stop(&a->tick);

  const char *res[] = {r->ok ? "success" : "failure"};
  thaw_metric_inc(a->m_runs, res);
  thaw_metric_set(a->m_running, NULL, 0);
  double secs = (double)(uv_now(a->loop) - r->started_ms) / 1000.0;
  thaw_metric_set(a->m_duration, NULL, secs);
  long long freed = -1;
  if (r->bytes_before >= 0 && r->bytes_after >= 0)
    freed = r->bytes_before > r->bytes_after ? r->bytes_before - r->bytes_after
                                             : 0;
  if (r->ok && r->have_counts)
    thaw_metric_add(a->m_blobs, NULL, (double)r->counts.blobs_deleted);
  if (r->ok && freed > 0)
    thaw_metric_add(a->m_bytes, NULL, (double)freed);

  char id[24], deleted[24], bytes[24], dur[32];
  snprintf(id, sizeof id, "%llu", r->id);
  snprintf(deleted, sizeof deleted, "%lld",
           r->have_counts ? r->counts.blobs_deleted : -1);
  snprintf(bytes, sizeof bytes, "%lld", freed);
  snprintf(dur, sizeof dur, "%.3f", secs);
  thaw_log(r->ok ? THAW_LOG_INFO : THAW_LOG_WARN, "garbage collection ended",
           "run", id, "result", res[0], "blobsDeleted", deleted,
           "bytesReclaimed", bytes, "seconds", dur, "message", r->message,
           (char *)NULL);
  if (a->stop_done) {
    void (*done)(void *) = a->stop_done;
    a->stop_done = NULL;
    done(a->stop_data);
  }
}

static void fail(thaw_gc_agent_t *a, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void fail(thaw_gc_agent_t *a, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  a->cur.ok = 0;
  vsnprintf(a->cur.message, sizeof a->cur.message, fmt, ap);
  va_end(ap);
}

/* --- walking the storage ----------------------------------------------- */

/* Apparent bytes of the regular files under dfd (which it closes). */
static long long walk_dir(int dfd, int depth) {
  DIR *d = fdopendir(dfd);
  if (d == NULL) {
    close(dfd);
    return -1;
  }
  long long total = 0;
  struct dirent *e;
  while ((e = readdir(d)) != NULL) {
    if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
      continue;
    struct stat st;
    if (fstatat(dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0)
      continue; /* gone meanwhile (an upload purged) */
    if (S_ISREG(st.st_mode)) {
      total += st.st_size;
    } else if (S_ISDIR(st.st_mode) && depth < WALK_DEPTH_MAX) {
      int fd = openat(dirfd(d), e->d_name,
                      O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
      long long sub = fd >= 0 ? walk_dir(fd, depth + 1) : -1;
      if (sub > 0)
        total += sub;
    }
  }
  closedir(d);
  return total;
}

static void walk_work(uv_work_t *w) {
  thaw_gc_agent_t *a = w->data;
  int fd = open(a->storage_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  a->walk_errno = fd < 0 ? errno : 0;
  a->walked = fd >= 0 ? walk_dir(fd, 0) : -1;
}

static void spawn_collector(thaw_gc_agent_t *a);

static void walk_done(thaw_gc_agent_t *a) {
  if (a->walk_errno != 0)
    thaw_warn("cannot measure the storage", "dir", a->storage_dir, "error",
              strerror(a->walk_errno));
  if (a->phase == P_MEASURE_BEFORE) {
    a->cur.bytes_before = a->walked;
    if (a->stopping_run) {
      fail(a, "%s", a->stop_reason);
      finish(a);
    } else {
      spawn_collector(a);
    }
  } else if (a->phase == P_MEASURE_AFTER) {
    a->cur.bytes_after = a->walked;
    finish(a);
  }
}

static void after_walk(uv_work_t *w, int status) {
  thaw_gc_agent_t *a = w->data;
  (void)status; /* walks are never cancelled */
  if (a->freeing) {
    unref(a);
    return;
  }
  a->refs--; /* never the last: the tick timer holds one until free */
  walk_done(a);
}

static void measure(thaw_gc_agent_t *a, enum phase phase) {
  a->phase = phase;
  a->work.data = a;
  if (uv_queue_work(a->loop, &a->work, walk_work, after_walk) == 0) {
    a->refs++;
    return;
  }
  a->walked = -1;
  a->walk_errno = ENOMEM;
  walk_done(a);
}

/* --- the collector ----------------------------------------------------- */

static void collector_ended(thaw_gc_agent_t *a) {
  run_t *r = &a->cur;
  if (a->stopping_run) {
    fail(a, "%s", a->stop_reason);
  } else if (a->term_signal != 0) {
    fail(a, "the collector was killed by signal %d", a->term_signal);
  } else if (a->exit_status != 0 &&
             thaw_gc_output_empty_storage(a->err_tail)) {
    r->ok = 1;
    r->have_counts = 1;
    memset(&r->counts, 0, sizeof r->counts);
    snprintf(r->message, sizeof r->message,
             "nothing stored yet, nothing to collect (%s)", a->err_tail);
  } else if (a->exit_status != 0) {
    r->ok = 0;
    snprintf(r->message, sizeof r->message, "exit status %lld: %s",
             (long long)a->exit_status,
             a->err_len > 0 ? a->err_tail : "(no error output)");
  } else if (r->have_counts) {
    r->ok = 1;
    snprintf(r->message, sizeof r->message,
             "%lld blobs marked, %lld blobs and %lld manifests eligible for "
             "deletion",
             r->counts.blobs_marked, r->counts.blobs_deleted,
             r->counts.manifests_deleted);
  } else {
    r->ok = 1;
    snprintf(r->message, sizeof r->message,
             "the collector printed no summary line");
  }
  if (a->storage_dir)
    measure(a, P_MEASURE_AFTER); /* also after a failure: a sweep cut short
                                    freed some */
  else
    finish(a);
}

static void part_done(thaw_gc_agent_t *a) {
  if (--a->pending == 0 && !a->freeing)
    collector_ended(a);
}

static void on_collector_exit(uv_process_t *p, int64_t status, int sig) {
  thaw_gc_agent_t *a = p->data;
  a->exit_status = status;
  a->term_signal = sig;
  a->child_alive = 0;
  close_handle(a, (uv_handle_t *)&a->proc, OPEN_PROC);
  part_done(a);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *b) {
  thaw_gc_agent_t *a = h->data;
  (void)suggested;
  *b = uv_buf_init(a->rbuf, sizeof a->rbuf);
}

static void on_line(thaw_gc_agent_t *a, char *line) {
  size_t n = strlen(line);
  if (n > 0 && line[n - 1] == '\r')
    line[n - 1] = '\0';
  thaw_gc_counts_t c;
  if (thaw_gc_parse_summary(line, &c) == 0) {
    a->cur.counts = c;
    a->cur.have_counts = 1;
  }
  thaw_debug("collector", "line", line);
}

/* stdout, line by line; a line over LINE_MAX_BYTES is dropped (the summary
 * line is short). */
static void on_out(uv_stream_t *s, ssize_t n, const uv_buf_t *b) {
  thaw_gc_agent_t *a = s->data;
  for (ssize_t i = 0; i < n; i++) {
    char ch = b->base[i];
    if (ch == '\n') {
      a->line[a->line_len] = '\0';
      if (!a->line_cut)
        on_line(a, a->line);
      a->line_len = 0;
      a->line_cut = 0;
    } else if (a->line_len < LINE_MAX_BYTES) {
      a->line[a->line_len++] = ch;
    } else {
      a->line_cut = 1;
    }
  }
  if (n < 0) { /* EOF, or the pipe failed */
    a->line[a->line_len] = '\0';
    if (a->line_len > 0 && !a->line_cut)
      on_line(a, a->line);
    a->line_len = 0;
    close_handle(a, (uv_handle_t *)&a->out, OPEN_OUT);
    part_done(a);
  }
}

/* stderr: its last ERR_TAIL bytes, on one line, for the run's message. */
static void on_err(uv_stream_t *s, ssize_t n, const uv_buf_t *b) {
  thaw_gc_agent_t *a = s->data;
  for (ssize_t i = 0; i < n; i++) {
    char ch = b->base[i];
    if (ch == '\n' || ch == '\r' || ch == '\t')
      ch = ' ';
    if (a->err_len == ERR_TAIL) {
      memmove(a->err_tail, a->err_tail + 1, ERR_TAIL - 1);
      a->err_len--;
    }
    a->err_tail[a->err_len++] = ch;
  }
  a->err_tail[a->err_len] = '\0';
  if (n < 0) {
    while (a->err_len > 0 && a->err_tail[a->err_len - 1] == ' ')
      a->err_tail[--a->err_len] = '\0';
    close_handle(a, (uv_handle_t *)&a->err, OPEN_ERR);
    part_done(a);
  }
}

static void spawn_collector(thaw_gc_agent_t *a) {
  a->phase = P_COLLECT;
  a->line_len = a->err_len = 0;
  a->line_cut = 0;
  a->err_tail[0] = '\0';
  a->exit_status = 0;
  a->term_signal = 0;
  uv_pipe_init(a->loop, &a->out, 0);
  uv_pipe_init(a->loop, &a->err, 0);
  a->out.data = a->err.data = a->proc.data = a;
  a->open |= OPEN_OUT | OPEN_ERR;
  a->refs += 2;
  /* Never --delete-untagged: 2.8 deletes the children of a kept index. */
  char *args[] = {a->binary, (char *)"garbage-collect", a->config, NULL};
  uv_stdio_container_t stdio[3] = {
      {.flags = UV_IGNORE},
      {.flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE,
       .data.stream = (uv_stream_t *)&a->out},
      {.flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE,
       .data.stream = (uv_stream_t *)&a->err}};
  uv_process_options_t po = {.exit_cb = on_collector_exit,
                             .file = a->binary,
                             .args = args,
                             .stdio_count = 3,
                             .stdio = stdio};
  int rc = uv_spawn(a->loop, &a->proc, &po);
  a->open |= OPEN_PROC; /* closed even when the spawn failed */
  a->refs++;
  if (rc != 0) {
    close_handle(a, (uv_handle_t *)&a->proc, OPEN_PROC);
    close_handle(a, (uv_handle_t *)&a->out, OPEN_OUT);
    close_handle(a, (uv_handle_t *)&a->err, OPEN_ERR);
    a->cur.ok = 0;
    snprintf(a->cur.message, sizeof a->cur.message, "cannot run %s: %s",
             a->binary, uv_strerror(rc));
    a->cur.bytes_after = a->cur.bytes_before; /* nothing ran */
    finish(a);
    return;
  }
  a->child_alive = 1;
  a->pending = 3;
  uv_read_start((uv_stream_t *)&a->out, on_alloc, on_out);
  uv_read_start((uv_stream_t *)&a->err, on_alloc, on_err);
  char pid[24];
  snprintf(pid, sizeof pid, "%d", a->proc.pid);
  thaw_info("collector started", "binary", a->binary, "config", a->config,
            "pid", pid);
}

/* --- starting and stopping ---------------------------------------------- */

static void stop_run(thaw_gc_agent_t *a, const char *reason) {
  if (a->stopping_run ||
      (a->phase != P_MEASURE_BEFORE && a->phase != P_COLLECT))
    return;
  a->stopping_run = 1;
  a->stop_at_ms = uv_now(a->loop);
  snprintf(a->stop_reason, sizeof a->stop_reason, "%s", reason);
  thaw_warn("stopping the garbage collection", "reason", reason);
  if (a->child_alive)
    uv_process_kill(&a->proc, SIGTERM);
}

static void on_tick(uv_timer_t *t) {
  thaw_gc_agent_t *a = t->data;
  uint64_t now = uv_now(a->loop);
  if (a->orphan_timeout_ms > 0 &&
      now - a->last_poll_ms > a->orphan_timeout_ms) {
    char reason[160];
    snprintf(reason, sizeof reason,
             "stopped: nobody asked about this run (GET /gc) for %llu s",
             (unsigned long long)(a->orphan_timeout_ms / 1000));
    stop_run(a, reason);
  }
  if (a->stopping_run && a->child_alive &&
      now - a->stop_at_ms >= KILL_AFTER_MS)
    uv_process_kill(&a->proc, SIGKILL);
}

int thaw_gc_agent_start(thaw_gc_agent_t *a) {
  if (a->phase != P_IDLE || a->freeing)
    return THAW_EEXIST;
  run_t *r = &a->cur;
  memset(r, 0, sizeof *r);
  r->id = ++a->runs;
  now_rfc3339(r->started, sizeof r->started);
  r->started_ms = uv_now(a->loop);
  r->bytes_before = r->bytes_after = -1;
  a->last_poll_ms = uv_now(a->loop);
  a->stopping_run = 0;
  thaw_metric_set(a->m_running, NULL, 1);
  uv_timer_start(&a->tick, on_tick, TICK_MS, TICK_MS);
  char id[24];
  snprintf(id, sizeof id, "%llu", r->id);
  thaw_info("garbage collection started", "run", id);
  if (a->storage_dir)
    measure(a, P_MEASURE_BEFORE);
  else
    spawn_collector(a);
  return 0;
}

int thaw_gc_agent_running(const thaw_gc_agent_t *a) {
  return a->phase != P_IDLE;
}

void thaw_gc_agent_stop(thaw_gc_agent_t *a, void (*done)(void *data),
                        void *data) {
  if (a->phase == P_IDLE) {
    if (done)
      done(data);
    return;
  }
  a->stop_done = done;
  a->stop_data = data;
  stop_run(a, "stopped: the agent is shutting down");
}

/* --- HTTP --------------------------------------------------------------- */

static void add_count(cJSON *o, const char *key, long long v) {
  if (v < 0)
    cJSON_AddNullToObject(o, key);
  else
    cJSON_AddNumberToObject(o, key, (double)v);
}

static cJSON *run_json(const run_t *r) {
  cJSON *o = cJSON_CreateObject();
  if (o == NULL)
    return NULL;
  cJSON_AddNumberToObject(o, "id", (double)r->id);
  cJSON_AddStringToObject(o, "result", r->ok ? "success" : "failure");
  cJSON_AddStringToObject(o, "startedAt", r->started);
  cJSON_AddStringToObject(o, "finishedAt", r->finished);
  add_count(o, "bytesBefore", r->bytes_before);
  add_count(o, "bytesAfter", r->bytes_after);
  add_count(o, "blobsMarked", r->have_counts ? r->counts.blobs_marked : -1);
  add_count(o, "blobsDeleted", r->have_counts ? r->counts.blobs_deleted : -1);
  add_count(o, "manifestsDeleted",
            r->have_counts ? r->counts.manifests_deleted : -1);
  cJSON_AddStringToObject(o, "message", r->message);
  return o;
}

static void reply_json(thaw_httpd_reply_t *reply, int status, cJSON *o) {
  char *text = o ? cJSON_PrintUnformatted(o) : NULL;
  cJSON_Delete(o);
  if (text == NULL) {
    reply->status = 500;
    return;
  }
  size_t n = strlen(text);
  reply->body = malloc(n + 2);
  if (reply->body == NULL) {
    free(text);
    reply->status = 500;
    return;
  }
  memcpy(reply->body, text, n);
  reply->body[n] = '\n';
  reply->len = n + 1;
  free(text);
  reply->status = status;
  reply->content_type = "application/json";
}

static cJSON *status_json(const thaw_gc_agent_t *a) {
  cJSON *o = cJSON_CreateObject();
  if (o == NULL)
    return NULL;
  cJSON_AddBoolToObject(o, "running", a->phase != P_IDLE);
  cJSON_AddNumberToObject(o, "runs", (double)a->runs);
  if (a->phase != P_IDLE) {
    cJSON *cur = cJSON_AddObjectToObject(o, "current");
    if (cur) {
      cJSON_AddNumberToObject(cur, "id", (double)a->cur.id);
      cJSON_AddStringToObject(cur, "startedAt", a->cur.started);
    }
  } else {
    cJSON_AddNullToObject(o, "current");
  }
  if (a->have_last)
    cJSON_AddItemToObject(o, "last", run_json(&a->last));
  else
    cJSON_AddNullToObject(o, "last");
  return o;
}

void thaw_gc_agent_http(const char *method, const char *path,
                        thaw_httpd_reply_t *reply, void *data) {
  thaw_gc_agent_t *a = data;
  int post = strcmp(method, "POST") == 0;
  if (strcmp(path, "/gc") == 0) {
    a->last_poll_ms = uv_now(a->loop); /* the watchdog's sign of life */
    if (!post) {
      reply_json(reply, 200, status_json(a));
      return;
    }
    int rc = thaw_gc_agent_start(a);
    cJSON *o = cJSON_CreateObject();
    if (o && rc == 0) {
      cJSON_AddNumberToObject(o, "id", (double)a->cur.id);
      cJSON_AddStringToObject(o, "startedAt", a->cur.started);
      reply_json(reply, 202, o);
    } else if (o && rc == THAW_EEXIST) {
      cJSON_AddStringToObject(o, "error", "a garbage collection is running");
      cJSON_AddNumberToObject(o, "id", (double)a->cur.id);
      reply_json(reply, 409, o);
    } else {
      cJSON_Delete(o);
      thaw_httpd_reply_text(reply, 500, "out of memory\n");
    }
  } else if (post && strcmp(path, "/healthz") == 0) {
    thaw_httpd_reply_text(reply, 405, "method not allowed\n");
    reply->allow = "GET, HEAD";
  } else if (strcmp(path, "/healthz") == 0) {
    thaw_httpd_reply_text(reply, 200, "ok\n");
  } else {
    thaw_httpd_reply_text(reply, 404, "not found\n");
  }
}

void thaw_gc_agent_ops_http(const char *path, thaw_httpd_reply_t *reply,
                            void *data) {
  thaw_gc_agent_t *a = data;
  if (strcmp(path, "/healthz") == 0 || strcmp(path, "/readyz") == 0)
    thaw_httpd_reply_text(reply, 200, "ok\n");
  else if (strcmp(path, "/metrics") == 0 && a->metrics_registry)
    thaw_httpd_reply_metrics(reply, a->metrics_registry);
  else
    thaw_httpd_reply_text(reply, 404, "not found\n");
}

/* --- life cycle --------------------------------------------------------- */

int thaw_gc_agent_new(uv_loop_t *loop, const thaw_gc_agent_opts_t *o,
                      thaw_gc_agent_t **out) {
  *out = NULL;
  if (loop == NULL || o == NULL || o->config == NULL || *o->config == '\0')
    return THAW_EINVAL;
  thaw_gc_agent_t *a = calloc(1, sizeof *a);
  if (a == NULL)
    return THAW_ENOMEM;
  a->loop = loop;
  a->config = strdup(o->config);
  a->binary = strdup(o->registry_binary ? o->registry_binary : "registry");
  a->storage_dir = o->storage_dir ? strdup(o->storage_dir) : NULL;
  a->orphan_timeout_ms = o->orphan_timeout_ms;
  a->metrics_registry = o->metrics;
  if (a->config == NULL || a->binary == NULL ||
      (o->storage_dir && a->storage_dir == NULL)) {
    a->freeing = 1;
    a->refs = 1;
    unref(a);
    return THAW_ENOMEM;
  }
  thaw_metrics_t *m = o->metrics;
  if (m) {
    static const char *const result[] = {"result"};
    a->m_runs = thaw_metrics_counter(
        m, "thaw_registry_gc_runs_total",
        "Garbage collections this agent ran, by result.", 1, result);
    const char *ok[] = {"success"}, *bad[] = {"failure"};
    thaw_metric_child(a->m_runs, ok); /* both at 0 from the start */
    thaw_metric_child(a->m_runs, bad);
    a->m_running = thaw_metrics_gauge(
        m, "thaw_registry_gc_running", "1 while a garbage collection runs.",
        0, NULL);
    thaw_metric_set(a->m_running, NULL, 0);
    a->m_blobs = thaw_metrics_counter(
        m, "thaw_registry_gc_blobs_deleted_total",
        "Blobs the collector deleted (manifests are blobs too).", 0, NULL);
    thaw_metric_add(a->m_blobs, NULL, 0);
    a->m_bytes = thaw_metrics_counter(
        m, "thaw_registry_gc_reclaimed_bytes_total",
        "Bytes freed in --storage-dir by garbage collections.", 0, NULL);
    thaw_metric_add(a->m_bytes, NULL, 0);
    a->m_duration = thaw_metrics_gauge(
        m, "thaw_registry_gc_last_duration_seconds",
        "How long the last garbage collection took.", 0, NULL);
  }
  uv_timer_init(loop, &a->tick);
  a->tick.data = a;
  a->open = OPEN_TICK;
  a->refs = 1;
  *out = a;
  return 0;
}

void thaw_gc_agent_free(thaw_gc_agent_t *a) {
  if (a == NULL || a->freeing)
    return;
  a->freeing = 1;
  a->stop_done = NULL;
  if (a->child_alive)
    uv_process_kill(&a->proc, SIGKILL);
  uv_timer_stop(&a->tick);
  close_handle(a, (uv_handle_t *)&a->proc, OPEN_PROC);
  close_handle(a, (uv_handle_t *)&a->out, OPEN_OUT);
  close_handle(a, (uv_handle_t *)&a->err, OPEN_ERR);
  close_handle(a, (uv_handle_t *)&a->tick, OPEN_TICK); /* a walk in flight
                                                          holds a ref */
}
