/* gc_agent_main.c - thaw-registry-gc: flags, signals, the HTTP server and
 * the loop; gc_agent.c runs the collections. It talks to no Kubernetes API
 * (so it needs no RBAC): only the controller calls it, over plain HTTP. */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <uv.h>

#include "cli.h"
#include "error.h"
#include "gc_agent.h"
#include "httpd.h"
#include "log.h"
#include "signals.h"
#include "metrics.h"
#include "units.h"

#ifndef THAW_VERSION
#define THAW_VERSION "dev"
#endif

#define PROG "thaw-registry-gc"

typedef struct {
  const char *config, *registry_binary, *bind_address, *metrics_address;
  const char *storage_dir;
  const char *log_level;
  uint64_t orphan_timeout_ms;
} flags_t;

static void usage(FILE *f) {
  fprintf(f,
"usage: " PROG " --config PATH [options]\n"
"Runs `REGISTRY garbage-collect CONFIG` when thaw-controller asks (POST /gc),\n"
"never by itself and never two at once; GET /gc tells how it went.\n"
"  --config PATH                the cache registry's config.yml (required)\n"
"  --registry-binary PATH       the distribution registry binary, looked up\n"
"                               in $PATH without a slash (default registry;\n"
"                               Debian's is docker-registry)\n"
"  --bind-address HOST:PORT     plain HTTP for /gc and /healthz, for\n"
"                               thaw-controller only (default :7440)\n"
"  --metrics-bind-address HOST:PORT\n"
"                               plain HTTP for /metrics, /healthz, /readyz,\n"
"                               GET only (default :7441)\n"
"  --storage-dir DIR            the filesystem storage's root directory, to\n"
"                               measure the bytes a run frees (default: not\n"
"                               measured, as with S3)\n"
"  --orphan-timeout DURATION    stop a run nobody has asked about (GET /gc)\n"
"                               for this long; 0 = never (default 30s)\n"
"  --log-level LEVEL            debug, info, warn or error (default\n"
"                               $THAW_LOG_LEVEL, else info)\n"
"  -h, --help                   this help\n"
"  --version                    print the version and exit\n");
}

/* Bad input: one line on stderr, exit status 2 (cli.h). */
#define bad(...) thaw_cli_bad(PROG, __VA_ARGS__)

/* 0: run; 1: --help or --version printed; 2: bad flags (one line on stderr). */
static int parse_flags(flags_t *f, int argc, char **argv) {
  enum { O_CONFIG = 256, O_BINARY, O_BIND, O_METRICS, O_STORAGE, O_ORPHAN,
         O_LOG, O_VERSION };
  static const struct option opts[] = {
      {"config", required_argument, NULL, O_CONFIG},
      {"registry-binary", required_argument, NULL, O_BINARY},
      {"bind-address", required_argument, NULL, O_BIND},
      {"metrics-bind-address", required_argument, NULL, O_METRICS},
      {"storage-dir", required_argument, NULL, O_STORAGE},
      {"orphan-timeout", required_argument, NULL, O_ORPHAN},
      {"log-level", required_argument, NULL, O_LOG},
      {"help", no_argument, NULL, 'h'},
      {"version", no_argument, NULL, O_VERSION},
      {NULL, 0, NULL, 0}};
  memset(f, 0, sizeof *f);
  f->registry_binary = "registry";
  f->bind_address = ":7440";
  f->metrics_address = ":7441";
  f->orphan_timeout_ms = 30000;
  opterr = 0;
  int opt;
  while ((opt = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
    const char *v = optarg;
    struct stat st;
    enum thaw_log_level lv;
    switch (opt) {
    case ':':
    case '?':
      return thaw_cli_getopt_bad(PROG, opt, argv);
    case 'h':
      usage(stdout);
      return 1;
    case O_VERSION:
      thaw_cli_version(stdout, PROG);
      return 1;
    case O_CONFIG:
      if (*v == '\0' || access(v, R_OK) != 0)
        return bad("--config %s: %s", v, *v ? strerror(errno) : "empty path");
      f->config = v;
      break;
    case O_BINARY:
      if (*v == '\0')
        return bad("--registry-binary: empty");
      if (strchr(v, '/') && access(v, X_OK) != 0)
        return bad("--registry-binary %s: %s", v, strerror(errno));
      f->registry_binary = v;
      break;
    case O_BIND:
      f->bind_address = v; /* checked when bound */
      break;
    case O_METRICS:
      f->metrics_address = v; /* checked when bound */
      break;
    case O_STORAGE:
      if (stat(v, &st) != 0)
        return bad("--storage-dir %s: %s", v, strerror(errno));
      if (!S_ISDIR(st.st_mode))
        return bad("--storage-dir %s: not a directory", v);
      f->storage_dir = v;
      break;
    case O_ORPHAN:
      if (thaw_parse_duration(v, &f->orphan_timeout_ms) != 0)
        return bad("--orphan-timeout %s: want a duration such as 30s, or 0",
                   v);
      break;
    case O_LOG:
      if (thaw_log_level_parse(v, &lv) != 0 || lv == THAW_LOG_OFF)
        return bad("--log-level %s: want debug, info, warn or error", v);
      f->log_level = v;
      break;
    }
  }
  if (optind < argc)
    return bad("unexpected argument %s (see --help)", argv[optind]);
  if (f->config == NULL)
    return bad("--config is required (see --help)");
  return 0;
}

typedef struct {
  uv_loop_t *loop;
  thaw_gc_agent_t *agent;
  thaw_httpd_t *httpd, *ops; /* /gc; /metrics and probes */
  thaw_signals_t sig;
} app_t;

/* The run in flight has ended (its result recorded as stopped): the
 * controller's next GET /gc could still see it, but nothing waits for
 * that; close everything. */
static void on_agent_stopped(void *data) {
  app_t *a = data;
  thaw_httpd_free(a->httpd);
  thaw_httpd_free(a->ops);
  a->httpd = a->ops = NULL;
  thaw_signals_close(&a->sig);
}

static void on_stop_signal(void *data) {
  app_t *a = data;
  thaw_gc_agent_stop(a->agent, on_agent_stopped, a);
}

int main(int argc, char **argv) {
  flags_t f;
  int rc = parse_flags(&f, argc, argv);
  if (rc != 0)
    return rc == 1 ? 0 : rc;
  enum thaw_log_level lv;
  if (f.log_level && thaw_log_level_parse(f.log_level, &lv) == 0)
    thaw_log_set_level(lv);
  signal(SIGPIPE, SIG_IGN); /* a peer gone mid-write is an error code */

  uv_loop_t loop;
  uv_loop_init(&loop);
  app_t a = {.loop = &loop};
  thaw_metrics_t *m = thaw_metrics_new();
  if (m == NULL || thaw_metrics_register_process(m, THAW_VERSION) != 0) {
    fprintf(stderr, PROG ": out of memory\n");
    return 1;
  }
  thaw_gc_agent_opts_t o = {.config = f.config,
                            .registry_binary = f.registry_binary,
                            .storage_dir = f.storage_dir,
                            .orphan_timeout_ms = f.orphan_timeout_ms,
                            .metrics = m};
  if ((rc = thaw_gc_agent_new(&loop, &o, &a.agent)) != 0) {
    fprintf(stderr, PROG ": %s\n", thaw_strerror(rc));
    thaw_metrics_free(m);
    return 1;
  }
  char err[300];
  const char *flag = "--bind-address";
  rc = thaw_httpd_start_post(&loop, f.bind_address, thaw_gc_agent_http,
                             a.agent, &a.httpd, err, sizeof err);
  if (rc == 0) {
    flag = "--metrics-bind-address";
    rc = thaw_httpd_start(&loop, f.metrics_address, thaw_gc_agent_ops_http,
                          a.agent, &a.ops, err, sizeof err);
  }
  if (rc != 0) {
    fprintf(stderr, PROG ": %s %s\n", flag, err);
    thaw_httpd_free(a.httpd);
    thaw_gc_agent_free(a.agent);
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_loop_close(&loop);
    thaw_metrics_free(m);
    return 2;
  }
  thaw_signals_start(&a.sig, &loop, on_stop_signal, &a);
  char port[16], mport[16];
  snprintf(port, sizeof port, "%d", thaw_httpd_port(a.httpd));
  snprintf(mport, sizeof mport, "%d", thaw_httpd_port(a.ops));
  thaw_info("started", "version", THAW_VERSION, "config", f.config,
            "registry", f.registry_binary, "storage",
            f.storage_dir ? f.storage_dir : "(not measured)", "address",
            f.bind_address, "port", port, "metrics_address",
            f.metrics_address, "metrics_port", mport);

  uv_run(&loop, UV_RUN_DEFAULT); /* until the signal handles close */
  thaw_gc_agent_free(a.agent);
  uv_run(&loop, UV_RUN_DEFAULT);
  if (uv_loop_close(&loop) != 0)
    thaw_warn("loop closed with handles open");
  thaw_metrics_free(m);
  return 0;
}
