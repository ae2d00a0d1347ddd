/* forward_main.c - thaw-node-forward: flags, signals and the loop; forward.c
 * relays. It runs in the node-local DaemonSet (hostNetwork) and talks to no
 * Kubernetes API. */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "cli.h"
#include "error.h"
#include "forward.h"
#include "log.h"
#include "signals.h"
#include "units.h"

#define PROG "thaw-node-forward"

static void usage(FILE *f) {
  fprintf(f,
"usage: " PROG " --forward LISTEN=HOST:PORT [--forward ...] [options]\n"
"Relays TCP from a node's loopback to in-cluster Services, so that\n"
"containerd reaches the cache registry and its token realm as localhost.\n"
"  --forward LISTEN=HOST:PORT   listen on LISTEN (IP:PORT or [IPv6]:PORT)\n"
"                               and relay each connection to HOST:PORT,\n"
"                               resolved anew for each (up to %d)\n"
"  --connect-timeout DURATION   resolve and connect within this (default 5s)\n"
"  --max-connections N          open at once, 1..65536; more are closed at\n"
"                               once (default 512)\n"
"  --log-level LEVEL            debug, info, warn or error (default info)\n"
"  --help                       this text\n"
"  --version                    print the version and exit\n"
"SIGTERM or SIGINT closes the listeners and every connection; exit 0.\n",
          THAW_FORWARD_ROUTES_MAX);
}

#define bad(...) thaw_cli_bad(PROG, __VA_ARGS__)

typedef struct {
  thaw_forward_route_t routes[THAW_FORWARD_ROUTES_MAX];
  size_t n;
  thaw_forward_opts_t o;
} flags_t;

enum { O_FORWARD = 256, O_TIMEOUT, O_MAX, O_LOG, O_VERSION };

static int parse_flags(flags_t *f, int argc, char **argv) {
  static const struct option opts[] = {
      {"forward", required_argument, NULL, O_FORWARD},
      {"connect-timeout", required_argument, NULL, O_TIMEOUT},
      {"max-connections", required_argument, NULL, O_MAX},
      {"log-level", required_argument, NULL, O_LOG},
      {"help", no_argument, NULL, 'h'},
      {"version", no_argument, NULL, O_VERSION},
      {NULL, 0, NULL, 0}};
  memset(f, 0, sizeof *f);
  f->o.connect_timeout_ms = 5000;
  f->o.max_connections = 512;
  opterr = 0;
  int opt;
  while ((opt = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
    const char *v = optarg;
    enum thaw_log_level lv;
    char *end;
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
    case O_FORWARD:
      if (f->n == THAW_FORWARD_ROUTES_MAX)
        return bad("at most %d --forward", THAW_FORWARD_ROUTES_MAX);
      if (thaw_forward_parse_route(v, &f->routes[f->n]) != 0)
        return bad("--forward %s: want IP:PORT=HOST:PORT", v);
      f->n++;
      break;
    case O_TIMEOUT:
      if (thaw_parse_duration(v, &f->o.connect_timeout_ms) != 0 ||
          f->o.connect_timeout_ms == 0)
        return bad("--connect-timeout %s: want a duration such as 5s", v);
      break;
    case O_MAX: {
      unsigned long n = strtoul(v, &end, 10);
      if (*v == '\0' || *end != '\0' || n < 1 || n > 65536)
        return bad("--max-connections %s: want 1..65536", v);
      f->o.max_connections = (unsigned)n;
      break;
    }
    case O_LOG:
      if (thaw_log_level_parse(v, &lv) != 0 || lv == THAW_LOG_OFF)
        return bad("--log-level %s: want debug, info, warn or error", v);
      thaw_log_set_level(lv);
      break;
    }
  }
  if (optind < argc)
    return bad("unexpected argument %s (see --help)", argv[optind]);
  if (f->n == 0)
    return bad("--forward is required (see --help)");
  return 0;
}

typedef struct {
  thaw_forward_t *fwd;
  thaw_signals_t sig;
} app_t;

static void on_stop_signal(void *data) {
  app_t *a = data;
  thaw_forward_free(a->fwd);
  a->fwd = NULL;
  thaw_signals_close(&a->sig);
}

int main(int argc, char **argv) {
  flags_t f;
  int rc = parse_flags(&f, argc, argv);
  if (rc != 0)
    return rc == 1 ? 0 : rc;
  signal(SIGPIPE, SIG_IGN); /* a peer gone mid-write is an error code */
  uv_loop_t loop;
  uv_loop_init(&loop);
  app_t a = {0};
  char err[300];
  if ((rc = thaw_forward_start(&loop, f.routes, f.n, &f.o, &a.fwd, err,
                               sizeof err)) != 0) {
    fprintf(stderr, PROG ": %s\n", err);
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_loop_close(&loop);
    return 1;
  }
  for (size_t i = 0; i < f.n; i++)
    thaw_info("forwarding", "listen", f.routes[i].listen, "target",
              f.routes[i].host, "port", f.routes[i].port);
  thaw_signals_start(&a.sig, &loop, on_stop_signal, &a);
  uv_run(&loop, UV_RUN_DEFAULT);
  thaw_info("stopped");
  return uv_loop_close(&loop) == 0 ? 0 : 1;
}
