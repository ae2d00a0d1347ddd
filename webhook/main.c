/* main.c - thaw-webhook: flags, signals and the loop; webhook.c wires. */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include <string.h>
#include <strings.h>
#include <uv.h>

#include "cli.h"
#include "error.h"
#include "imgref.h"
#include "kubeconfig.h"
#include "log.h"
#include "signals.h"
#include "units.h"
#include "sysns.h"
#include "webhook.h"

#define PROG "thaw-webhook"
#define CACHE_HOST_MAX 255
#define COLD_WAIT_MAX_MS (5u * 60 * 1000) /* 5m: the controller caps at 300 s */

static void usage(FILE *f) {
  fprintf(f,
"usage: " PROG " --tls-cert-file PATH --tls-key-file PATH [options]\n"
"  --kubeconfig PATH            kubeconfig to use (default: $KUBECONFIG;\n"
"                               in-cluster config when neither is set)\n"
"  --namespace NS               the system's namespace, never mutated\n"
"                               (default: the service account's namespace,\n"
"                               else thaw-system)\n"
"  --exclude-namespaces LIST    comma-separated namespaces never mutated or\n"
"                               recorded, like kube-system and --namespace\n"
"                               (default none)\n"
"  --registry-url URL           cache registry base URL, probed with GET\n"
"                               /v2/ every 2 s; without it the gate stays\n"
"                               down: images are recorded, never rewritten\n"
"  --cache-host HOST[:PORT]     host in rewritten references\n"
"                               (default localhost:7439)\n"
"  --private-cache-host HOST[:PORT]\n"
"                               host of private images' rewritten references,\n"
"                               HOST[:PORT]/private/... (default localhost:7440)\n"
"  --bind-address HOST:PORT     TLS listener for /mutate (default :9443)\n"
"  --tls-cert-file PATH         serving certificate chain, PEM (required;\n"
"                               reloaded when it changes)\n"
"  --tls-key-file PATH          its private key, PEM (required)\n"
"  --cold-wait DURATION         gate pods with a cold image (scheduling gate\n"
"                               thaw.dev/warming) until its warm ends, at\n"
"                               most this long; needs the controller's Lease\n"
"                               (Go duration, 0 to 5m; default 0: off)\n"
"  --metrics-bind-address HOST:PORT\n"
"                               plain HTTP for /metrics, /healthz, /readyz\n"
"                               (default :8080)\n"
"  --log-level LEVEL            debug, info, warn or error (default info,\n"
"                               or $THAW_LOG_LEVEL)\n"
"  --help                       this text\n"
"  --version                    print the version and exit\n"
"SIGTERM or SIGINT stops gracefully: no new connections, requests in\n"
"flight finish, connections still open after 25 s are closed; exit 0.\n"
"A second signal exits at once (status 1).\n");
}

/* Bad input: one line on stderr, exit status 2 (cli.h). */
#define bad(...) thaw_cli_bad(PROG, __VA_ARGS__)


static int valid_cache_host(const char *s) {
  size_t n = strlen(s);
  if (n == 0 || n > CACHE_HOST_MAX)
    return 0;
  for (size_t i = 0; i < n; i++)
    if (s[i] <= ' ' || s[i] == '/' || s[i] == '@' || (unsigned char)s[i] > 126)
      return 0;
  return 1;
}


typedef struct {
  uv_loop_t *loop;
  thaw_webhook_t *wh;
  thaw_signals_t sig;
  int clean;
} app_t;

static void on_stopped(int clean, void *data) {
  app_t *a = data;
  a->clean = clean;
  thaw_signals_close(&a->sig);
  if (!clean)
    uv_stop(a->loop); /* connections still hold handles: leave them */
}

static void on_stop_signal(void *data) {
  app_t *a = data;
  thaw_webhook_stop(a->wh, on_stopped, a);
}

int main(int argc, char **argv) {
  enum { O_KUBECONFIG = 256, O_NAMESPACE, O_REGISTRY, O_CACHE_HOST, O_BIND,
         O_CERT, O_KEY, O_METRICS, O_LOG_LEVEL, O_VERSION,
         O_EXCLUDE, O_COLD_WAIT, O_PRIVATE_CACHE_HOST };
  static const struct option opts[] = {
      {"kubeconfig", required_argument, NULL, O_KUBECONFIG},
      {"namespace", required_argument, NULL, O_NAMESPACE},
      {"exclude-namespaces", required_argument, NULL, O_EXCLUDE},
      {"registry-url", required_argument, NULL, O_REGISTRY},
      {"cache-host", required_argument, NULL, O_CACHE_HOST},
      {"private-cache-host", required_argument, NULL, O_PRIVATE_CACHE_HOST},
      {"bind-address", required_argument, NULL, O_BIND},
      {"tls-cert-file", required_argument, NULL, O_CERT},
      {"tls-key-file", required_argument, NULL, O_KEY},
      {"metrics-bind-address", required_argument, NULL, O_METRICS},
      {"log-level", required_argument, NULL, O_LOG_LEVEL},
      {"cold-wait", required_argument, NULL, O_COLD_WAIT},
      {"help", no_argument, NULL, 'h'},
      {"version", no_argument, NULL, O_VERSION},
      {NULL, 0, NULL, 0}};
  const char *kubeconfig = NULL, *ns = NULL;
  thaw_webhook_config_t cfg = {
      .cache_host = "localhost:7439",
      .private_cache_host = THAW_IMGREF_PRIVATE_CACHE_HOST,
      .bind_address = ":9443",
      .metrics_bind_address = ":8080",
  };
  opterr = 0; /* our own one-line messages */
  int c;
  while ((c = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
    switch (c) {
    case O_KUBECONFIG: kubeconfig = optarg; break;
    case O_NAMESPACE: ns = optarg; break;
    case O_EXCLUDE: cfg.exclude_namespaces = optarg; break;
    case O_REGISTRY: cfg.registry_url = optarg; break;
    case O_CACHE_HOST: cfg.cache_host = optarg; break;
    case O_PRIVATE_CACHE_HOST: cfg.private_cache_host = optarg; break;
    case O_BIND: cfg.bind_address = optarg; break;
    case O_CERT: cfg.tls_cert_file = optarg; break;
    case O_KEY: cfg.tls_key_file = optarg; break;
    case O_METRICS: cfg.metrics_bind_address = optarg; break;
    case O_COLD_WAIT: {
      uint64_t ms;
      if (thaw_parse_duration(optarg, &ms) != 0 || ms > COLD_WAIT_MAX_MS)
        return bad("--cold-wait %s: want a duration from 0 to 5m", optarg);
      /* whole seconds, rounded up: a wait asked for is never 0 */
      cfg.cold_wait_s = (unsigned)((ms + 999) / 1000);
      break;
    }
    case O_LOG_LEVEL: {
      enum thaw_log_level lv;
      if (thaw_log_level_parse(optarg, &lv) != 0 || lv == THAW_LOG_OFF)
        return bad("--log-level %s: want debug, info, warn or error", optarg);
      thaw_log_set_level(lv);
      break;
    }
    case 'h':
      usage(stdout);
      return 0;
    case O_VERSION:
      thaw_cli_version(stdout, PROG);
      return 0;
    case ':':
      return bad("%s needs a value (see --help)", argv[optind - 1]);
    default:
      return bad("unknown option %s (see --help)", argv[optind - 1]);
    }
  }
  if (optind < argc)
    return bad("unexpected argument %s (see --help)", argv[optind]);
  if (cfg.tls_cert_file == NULL || cfg.tls_key_file == NULL)
    return bad("--tls-cert-file and --tls-key-file are required");
  if (!valid_cache_host(cfg.cache_host))
    return bad("--cache-host %s: want HOST[:PORT]", cfg.cache_host);
  if (!valid_cache_host(cfg.private_cache_host))
    return bad("--private-cache-host %s: want HOST[:PORT]",
               cfg.private_cache_host);
  if (strcasecmp(cfg.private_cache_host, cfg.cache_host) == 0)
    return bad("--private-cache-host %s: must differ from --cache-host",
               cfg.private_cache_host);
  char sa_ns[THAW_NAMESPACE_MAX + 1];
  if (ns == NULL) {
    thaw_system_namespace_default(sa_ns, sizeof sa_ns);
    ns = sa_ns;
  }
  if (!thaw_namespace_valid(ns))
    return bad("--namespace %s: not a namespace name", ns);

  /* As kubectl: the flag, else $KUBECONFIG, else in-cluster. */
  if (kubeconfig == NULL && getenv("KUBECONFIG") && *getenv("KUBECONFIG"))
    kubeconfig = getenv("KUBECONFIG");
  thaw_kube_config_t kc;
  char err[600];
  if (thaw_kube_config_load(&kc, kubeconfig, err, sizeof err) != 0)
    return bad("%s", err);
  cfg.kube = &kc;
  cfg.namespace = ns;

  signal(SIGPIPE, SIG_IGN); /* a peer gone mid-write is an error code */
  uv_loop_t loop;
  uv_loop_init(&loop);
  app_t a = {.loop = &loop};
  int rc = thaw_webhook_new(&loop, &cfg, &a.wh, err, sizeof err);
  thaw_kube_config_free(&kc);
  if (rc != 0) {
    uv_run(&loop, UV_RUN_DEFAULT); /* let half-made parts close */
    uv_loop_close(&loop);
    bad("%s", err);
    return rc == THAW_ENOMEM ? 1 : 2;
  }
  thaw_signals_start(&a.sig, &loop, on_stop_signal, &a);

  int status = 0;
  if (thaw_webhook_start(a.wh, err, sizeof err) != 0) {
    thaw_error("cannot start", "error", err);
    status = 1;
    a.sig.stopping = 1;
    thaw_webhook_stop(a.wh, on_stopped, &a);
  }
  uv_run(&loop, UV_RUN_DEFAULT);
  if (!a.clean) {
    /* Connections that would not close even after the drain deadline and a
     * shutdown(2) are still referenced by h2o: freeing its state would be a
     * use after free. The process is ending, so the OS reclaims it; _exit
     * also skips exit-time leak checks, which would report this on purpose. */
    fflush(stderr);
    _exit(status);
  }
  thaw_webhook_free(a.wh);
  uv_run(&loop, UV_RUN_DEFAULT);
  if (uv_loop_close(&loop) != 0)
    thaw_warn("loop closed with handles open");
  return status;
}
