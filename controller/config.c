/* config.c - thaw-controller's flags (config.h): getopt_long over argv,
 * defaults first, every value checked here so that the rest of the
 * controller can trust its settings. Bad input is one line on stderr and
 * status 2, as in thaw-webhook. */
#include "config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "cli.h"
#include "error.h"
#include "imgref.h"
#include "log.h"
#include "sysns.h"

#define PROG "thaw-controller"
#define HOST_MAX 255
#define PLATFORM_PART_MAX 32
#define MIN_INTERVAL_MS 1000 /* refresh and expiry below 1 s are mistakes */

/* Slots of c->owned: the copies each list (and the URL) point into. */
enum { OWN_INSECURE, OWN_PLATFORMS, OWN_PREWARM, OWN_EXCLUDE, OWN_REGISTRY };

void thaw_config_usage(FILE *f) {
  fprintf(f,
"usage: " PROG " --registry-url URL [options]\n"
"  --kubeconfig PATH            kubeconfig to use (default: $KUBECONFIG;\n"
"                               in-cluster config when neither is set)\n"
"  --namespace NS               the system's namespace: the Lease, never\n"
"                               cached (default: the service account's\n"
"                               namespace, else thaw-system)\n"
"  --registry-url URL           cache registry base URL, http:// or\n"
"                               https://HOST[:PORT] (required)\n"
"  --cache-host HOST[:PORT]     host in rewritten references\n"
"                               (default localhost:7439)\n"
"  --private-cache-host HOST[:PORT]\n"
"                               host of private images' rewritten references\n"
"                               (HOST[:PORT]/private/...) and of the thaw-pull\n"
"                               Secrets (default localhost:7440)\n"
"  --insecure-registries LIST   comma-separated HOST[:PORT] upstreams reached\n"
"                               over plain HTTP (default: none)\n"
"  --metrics-bind-address HOST:PORT\n"
"                               plain HTTP for /metrics, /healthz, /readyz\n"
"                               (default :8081)\n"
"  --concurrency N              images warmed at once, 1..256 (default 4)\n"
"  --blob-concurrency N         blobs copied at once per image, 1..64\n"
"                               (default 6, as skopeo copies layers)\n"
"  --platforms LIST             comma-separated OS/ARCH[/VARIANT] children\n"
"                               of an index to copy for tag references\n"
"                               (default: every platform)\n"
"  --refresh-interval DURATION  re-resolve tags upstream this often, at\n"
"                               least 1s (default 1h)\n"
"  --expire-after DURATION      expire images unused this long, at least 1s\n"
"                               (default 720h; spec.expireAfter overrides)\n"
"  --max-cache-bytes SIZE       evict unused images, least recently used\n"
"                               first, above this size, e.g. 50Gi or 200G\n"
"                               (default 0: unbounded)\n"
"  --expire-grace DURATION      time an image stays Expiring (not served,\n"
"                               still cached) before it is deleted\n"
"                               (default 10m)\n"
"  --repair-after DURATION      give a pod stuck pulling a rewritten image\n"
"                               its original image back after this long\n"
"                               (default 30s)\n"
"  --gc-url URL                 http[s]://HOST:PORT of thaw-registry-gc, which\n"
"                               garbage-collects the cache registry while\n"
"                               warming is paused (default: none, no GC)\n"
"  --gc-interval DURATION       at least this long between two garbage\n"
"                               collections (default 1h)\n"
"  --exclude-namespaces LIST    comma-separated namespaces never cached,\n"
"                               swept or pre-warmed, like kube-system and\n"
"                               --namespace (default: none)\n"
"  --prewarm-namespaces LIST    comma-separated namespaces whose\n"
"                               PodTemplates are warmed, as with the label\n"
"                               thaw.dev/prewarm=true (default: none)\n"
"  --allow-private[=BOOL]       cache images that need pull secrets\n"
"                               (default false)\n"
"  --leader-elect[=BOOL]        hold the Lease thaw-controller before\n"
"                               reconciling (default true)\n"
"  --token-key-file PATH        PEM private key (RSA >= 2048 bits or EC\n"
"                               P-256) that signs the cache registry's\n"
"                               tokens; with --token-cert-file (default:\n"
"                               none, the cache registry has no auth)\n"
"  --token-cert-file PATH       PEM certificate of that key: the cache\n"
"                               registry's auth.token.rootcertbundle\n"
"  --token-bind-address HOST:PORT\n"
"                               plain HTTP for the token endpoint GET\n"
"                               /token, with --token-key-file (default\n"
"                               :7442)\n"
"  --upstream-ca-file PATH      extra PEM trust anchors for upstream\n"
"                               registries (default: system store only)\n"
"  --log-level LEVEL            debug, info, warn or error (default info,\n"
"                               or $THAW_LOG_LEVEL)\n"
"  --help                       this text\n"
"  --version                    print the version and exit\n"
"DURATION is Go's: 90s, 1h30m, 1.5h (units ns us ms s m h). BOOL is true or\n"
"false (also 1/0, t/f). A LIST that is empty (--platforms=) is empty; an\n"
"empty entry in it is an error.\n"
"SIGTERM or SIGINT stops gracefully: warms in flight are cancelled (a\n"
"restart or the next leader resumes them, copying only what is missing)\n"
"and the Lease is released; exit 0. A second signal exits at once\n"
"(status 1).\n");
}

/* Bad input: one line on stderr, exit status 2 (cli.h). */
#define bad(...) thaw_cli_bad(PROG, __VA_ARGS__)

/* --- values ---------------------------------------------------------- */

static int parse_bool(const char *s) {
  static const char *const t[] = {"1", "t", "T", "true", "TRUE", "True"};
  static const char *const f[] = {"0", "f", "F", "false", "FALSE", "False"};
  for (size_t i = 0; i < 6; i++) {
    if (strcmp(s, t[i]) == 0)
      return 1;
    if (strcmp(s, f[i]) == 0)
      return 0;
  }
  return -1;
}

/* A decimal in [lo, hi], digits only. */
static int parse_uint(const char *s, unsigned lo, unsigned hi, unsigned *out) {
  size_t n = strlen(s);
  if (n == 0 || n > 9 || strspn(s, "0123456789") != n)
    return -1;
  unsigned long v = strtoul(s, NULL, 10);
  if (v < lo || v > hi)
    return -1;
  *out = (unsigned)v;
  return 0;
}


/* A port: 1..65535, digits only (allow0: also 0, for a listener). */
static int valid_port(const char *s, size_t n, int allow0) {
  if (n == 0 || n > 5)
    return 0;
  unsigned long v = 0;
  for (size_t i = 0; i < n; i++) {
    if (s[i] < '0' || s[i] > '9')
      return 0;
    v = v * 10 + (unsigned long)(s[i] - '0');
  }
  return v <= 65535 && (allow0 || v > 0);
}

/* host[:port] as in an image reference: DNS labels (letters, digits,
 * inner '-') joined by '.', or "[" IPv6 "]", then an optional port. */
static int valid_hostport(const char *s, size_t n) {
  if (n == 0 || n > HOST_MAX)
    return 0;
  size_t h;
  if (s[0] == '[') {
    const char *close = memchr(s, ']', n);
    char a[64];
    struct in6_addr a6;
    size_t al = close ? (size_t)(close - s - 1) : 0;
    if (close == NULL || al == 0 || al >= sizeof a)
      return 0;
    memcpy(a, s + 1, al);
    a[al] = '\0';
    if (inet_pton(AF_INET6, a, &a6) != 1)
      return 0;
    h = (size_t)(close - s) + 1;
  } else {
    h = 0;
    size_t label = 0;
    for (; h < n && s[h] != ':'; h++) {
      char ch = s[h];
      if (ch == '.') {
        if (label == 0 || s[h - 1] == '-')
          return 0;
        label = 0;
      } else if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
                 (ch >= '0' && ch <= '9') || (ch == '-' && label > 0)) {
        if (++label > 63)
          return 0;
      } else {
        return 0;
      }
    }
    if (label == 0 || s[h - 1] == '-')
      return 0;
  }
  if (h == n)
    return 1;
  return s[h] == ':' && valid_port(s + h + 1, n - h - 1, 0);
}

/* HOST:PORT for a listener: ":PORT", an IPv4 address, localhost, or
 * "[IPV6]"; the port may be 0 (any). */
static int valid_bind_address(const char *s) {
  char host[64];
  const char *colon;
  if (s[0] == '[') {
    const char *close = strchr(s, ']');
    struct in6_addr a6;
    if (close == NULL || close[1] != ':' || (size_t)(close - s - 1) >= sizeof host)
      return 0;
    snprintf(host, sizeof host, "%.*s", (int)(close - s - 1), s + 1);
    if (inet_pton(AF_INET6, host, &a6) != 1)
      return 0;
    colon = close + 1;
  } else {
    struct in_addr a4;
    colon = strrchr(s, ':');
    if (colon == NULL || (size_t)(colon - s) >= sizeof host)
      return 0;
    snprintf(host, sizeof host, "%.*s", (int)(colon - s), s);
    if (host[0] != '\0' && strcmp(host, "localhost") != 0 &&
        inet_pton(AF_INET, host, &a4) != 1)
      return 0;
  }
  return valid_port(colon + 1, strlen(colon + 1), 1);
}

/* os/arch[/variant], each part [a-z0-9._-], as OCI platform values are. */
static int valid_platform(const char *s) {
  int parts = 1;
  size_t len = 0;
  for (const char *p = s;; p++) {
    if (*p == '/' || *p == '\0') {
      if (len == 0)
        return 0;
      if (*p == '\0')
        break;
      if (++parts > 3)
        return 0;
      len = 0;
    } else if ((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') ||
               *p == '.' || *p == '_' || *p == '-') {
      if (++len > PLATFORM_PART_MAX)
        return 0;
    } else {
      return 0;
    }
  }
  return parts >= 2;
}

/* Splits a copy of `value` at commas into list (NULL-ended), each entry
 * checked by `ok`. The copy goes to c->owned[slot]. Returns 0, or 2 with
 * the line printed. */
static int parse_list(thaw_config_t *c, int slot, const char *flag,
                      const char *value, const char **list,
                      int (*ok)(const char *), const char *want) {
  free(c->owned[slot]);
  c->owned[slot] = NULL;
  list[0] = NULL;
  if (*value == '\0')
    return 0; /* an empty list */
  char *copy = strdup(value);
  if (copy == NULL)
    return bad("out of memory");
  c->owned[slot] = copy;
  size_t n = 0;
  for (char *p = copy;;) {
    char *comma = strchr(p, ',');
    if (comma)
      *comma = '\0';
    if (*p == '\0')
      return bad("%s %s: empty entry", flag, value);
    if (!ok(p))
      return bad("%s %s: %s is not %s", flag, value, p, want);
    if (n == THAW_CONFIG_LIST_MAX)
      return bad("%s: more than %d entries", flag, THAW_CONFIG_LIST_MAX);
    list[n++] = p;
    list[n] = NULL;
    if (comma == NULL)
      break;
    p = comma + 1;
  }
  return 0;
}

static int ok_hostport(const char *s) { return valid_hostport(s, strlen(s)); }

/* Parses the registry URL into c: scheme, host[:port], and a copy without
 * a trailing '/', so callers can append "/v2/...". */
static int parse_registry_url(thaw_config_t *c, const char *url) {
  const char *rest;
  if (strncmp(url, "https://", 8) == 0) {
    rest = url + 8;
    c->registry_insecure = 0;
  } else if (strncmp(url, "http://", 7) == 0) {
    rest = url + 7;
    c->registry_insecure = 1;
  } else {
    return bad("--registry-url %s: want http:// or https://HOST[:PORT]", url);
  }
  size_t n = strlen(rest);
  if (n > 0 && rest[n - 1] == '/')
    n--;
  if (!valid_hostport(rest, n) || n >= sizeof c->registry_host)
    return bad("--registry-url %s: want http:// or https://HOST[:PORT], "
               "without a path", url);
  for (size_t i = 0; i < n; i++) /* hosts compare lower-case */
    c->registry_host[i] = (rest[i] >= 'A' && rest[i] <= 'Z')
                              ? (char)(rest[i] - 'A' + 'a') : rest[i];
  c->registry_host[n] = '\0';
  free(c->owned[OWN_REGISTRY]);
  c->owned[OWN_REGISTRY] = strndup(url, (size_t)(rest - url) + n);
  if (c->owned[OWN_REGISTRY] == NULL)
    return bad("out of memory");
  c->registry_url = c->owned[OWN_REGISTRY];
  return 0;
}


/* --- flags ----------------------------------------------------------- */

enum {
  O_KUBECONFIG = 256, O_NAMESPACE, O_REGISTRY, O_CACHE_HOST, O_INSECURE,
  O_METRICS, O_CONCURRENCY, O_BLOB_CONCURRENCY, O_PLATFORMS, O_REFRESH,
  O_EXPIRE, O_MAX_BYTES, O_PREWARM, O_EXCLUDE, O_ALLOW_PRIVATE, O_LEADER_ELECT,
  O_CA_FILE, O_LOG_LEVEL, O_VERSION, O_EXPIRE_GRACE, O_REPAIR_AFTER, O_GC_URL,
  O_GC_INTERVAL, O_TOKEN_KEY, O_TOKEN_CERT, O_TOKEN_BIND, O_PRIVATE_CACHE_HOST
};

static const struct option opts[] = {
    {"kubeconfig", required_argument, NULL, O_KUBECONFIG},
    {"namespace", required_argument, NULL, O_NAMESPACE},
    {"registry-url", required_argument, NULL, O_REGISTRY},
    {"cache-host", required_argument, NULL, O_CACHE_HOST},
    {"private-cache-host", required_argument, NULL, O_PRIVATE_CACHE_HOST},
    {"insecure-registries", required_argument, NULL, O_INSECURE},
    {"metrics-bind-address", required_argument, NULL, O_METRICS},
    {"concurrency", required_argument, NULL, O_CONCURRENCY},
    {"blob-concurrency", required_argument, NULL, O_BLOB_CONCURRENCY},
    {"platforms", required_argument, NULL, O_PLATFORMS},
    {"refresh-interval", required_argument, NULL, O_REFRESH},
    {"expire-after", required_argument, NULL, O_EXPIRE},
    {"max-cache-bytes", required_argument, NULL, O_MAX_BYTES},
    {"expire-grace", required_argument, NULL, O_EXPIRE_GRACE},
    {"repair-after", required_argument, NULL, O_REPAIR_AFTER},
    {"gc-url", required_argument, NULL, O_GC_URL},
    {"gc-interval", required_argument, NULL, O_GC_INTERVAL},
    {"prewarm-namespaces", required_argument, NULL, O_PREWARM},
    {"exclude-namespaces", required_argument, NULL, O_EXCLUDE},
    {"allow-private", optional_argument, NULL, O_ALLOW_PRIVATE},
    {"leader-elect", optional_argument, NULL, O_LEADER_ELECT},
    {"upstream-ca-file", required_argument, NULL, O_CA_FILE},
    {"token-key-file", required_argument, NULL, O_TOKEN_KEY},
    {"token-cert-file", required_argument, NULL, O_TOKEN_CERT},
    {"token-bind-address", required_argument, NULL, O_TOKEN_BIND},
    {"log-level", required_argument, NULL, O_LOG_LEVEL},
    {"help", no_argument, NULL, 'h'},
    {"version", no_argument, NULL, O_VERSION},
    {NULL, 0, NULL, 0}};

static int parse_duration_flag(const char *flag, const char *v, uint64_t *ms) {
  if (thaw_parse_duration(v, ms) != 0)
    return bad("%s %s: want a duration such as 90s, 1h30m or 720h", flag, v);
  if (*ms < MIN_INTERVAL_MS)
    return bad("%s %s: must be at least 1s", flag, v);
  return 0;
}

/* One flag into c. Returns 0, 1 (--help or --version printed) or 2. */
static int apply(thaw_config_t *c, int opt, const char *v, const char *arg,
                 const char **ns) {
  int b;
  switch (opt) {
  case O_KUBECONFIG:
    if (*v == '\0')
      return bad("--kubeconfig: empty path");
    c->kubeconfig = v;
    return 0;
  case O_NAMESPACE:
    *ns = v;
    return 0;
  case O_REGISTRY:
    return parse_registry_url(c, v);
  case O_CACHE_HOST:
    if (!valid_hostport(v, strlen(v)))
      return bad("--cache-host %s: want HOST[:PORT]", v);
    c->cache_host = v;
    return 0;
  case O_PRIVATE_CACHE_HOST:
    if (!valid_hostport(v, strlen(v)))
      return bad("--private-cache-host %s: want HOST[:PORT]", v);
    c->private_cache_host = v;
    return 0;
  case O_INSECURE: {
    int rc = parse_list(c, OWN_INSECURE, "--insecure-registries", v,
                        c->insecure_registries, ok_hostport, "HOST[:PORT]");
    for (char *p = c->owned[OWN_INSECURE]; rc == 0 && p && *p; p++)
      if (*p >= 'A' && *p <= 'Z') /* as image references normalise hosts */
        *p = (char)(*p - 'A' + 'a');
    return rc;
  }
  case O_METRICS:
    if (!valid_bind_address(v))
      return bad("--metrics-bind-address %s: want HOST:PORT, :PORT or "
                 "[IPV6]:PORT with an IP address or localhost", v);
    c->metrics_bind_address = v;
    return 0;
  case O_CONCURRENCY:
    if (parse_uint(v, 1, 256, &c->concurrency) != 0)
      return bad("--concurrency %s: want a number from 1 to 256", v);
    return 0;
  case O_BLOB_CONCURRENCY:
    if (parse_uint(v, 1, 64, &c->blob_concurrency) != 0)
      return bad("--blob-concurrency %s: want a number from 1 to 64", v);
    return 0;
  case O_PLATFORMS:
    return parse_list(c, OWN_PLATFORMS, "--platforms", v, c->platforms,
                      valid_platform, "OS/ARCH[/VARIANT]");
  case O_REFRESH:
    return parse_duration_flag("--refresh-interval", v, &c->refresh_interval_ms);
  case O_EXPIRE:
    return parse_duration_flag("--expire-after", v, &c->expire_after_ms);
  case O_MAX_BYTES:
    if (thaw_parse_bytes(v, &c->max_cache_bytes) != 0)
      return bad("--max-cache-bytes %s: want a size such as 50Gi, 200G or "
                 "0", v);
    return 0;
  case O_EXPIRE_GRACE:
    return parse_duration_flag("--expire-grace", v, &c->expire_grace_ms);
  case O_REPAIR_AFTER:
    return parse_duration_flag("--repair-after", v, &c->repair_after_ms);
  case O_GC_INTERVAL:
    return parse_duration_flag("--gc-interval", v, &c->gc_interval_ms);
  case O_GC_URL:
    if (strncmp(v, "http://", 7) != 0 && strncmp(v, "https://", 8) != 0)
      return bad("--gc-url %s: want http://HOST:PORT or https://HOST:PORT", v);
    if (!valid_hostport(strchr(v, '/') + 2, strlen(strchr(v, '/') + 2)))
      return bad("--gc-url %s: want http://HOST:PORT or https://HOST:PORT", v);
    c->gc_url = v;
    return 0;
  case O_EXCLUDE:
    return parse_list(c, OWN_EXCLUDE, "--exclude-namespaces", v,
                      c->exclude_namespaces, thaw_namespace_valid,
                      "a namespace name");
  case O_PREWARM:
    return parse_list(c, OWN_PREWARM, "--prewarm-namespaces", v,
                      c->prewarm_namespaces, thaw_namespace_valid,
                      "a namespace name");
  case O_ALLOW_PRIVATE:
  case O_LEADER_ELECT:
    b = arg ? parse_bool(arg) : 1;
    if (b < 0)
      return bad("--%s=%s: want true or false",
                 opt == O_ALLOW_PRIVATE ? "allow-private" : "leader-elect", arg);
    *(opt == O_ALLOW_PRIVATE ? &c->allow_private : &c->leader_elect) = b;
    return 0;
  case O_TOKEN_KEY:
  case O_TOKEN_CERT: {
    const char *flag = opt == O_TOKEN_KEY ? "--token-key-file"
                                          : "--token-cert-file";
    if (*v == '\0') /* read at start, with the reason if it fails */
      return bad("%s: empty path", flag);
    *(opt == O_TOKEN_KEY ? &c->token_key_file : &c->token_cert_file) = v;
    return 0;
  }
  case O_TOKEN_BIND:
    if (!valid_bind_address(v))
      return bad("--token-bind-address %s: want HOST:PORT, :PORT or "
                 "[IPV6]:PORT with an IP address or localhost", v);
    c->token_bind_address = v;
    return 0;
  case O_CA_FILE:
    if (*v == '\0' || access(v, R_OK) != 0)
      return bad("--upstream-ca-file %s: %s", v,
                 *v ? strerror(errno) : "empty path");
    c->ca_file = v;
    return 0;
  case O_LOG_LEVEL: {
    enum thaw_log_level lv;
    if (thaw_log_level_parse(v, &lv) != 0 || lv == THAW_LOG_OFF)
      return bad("--log-level %s: want debug, info, warn or error", v);
    c->log_level = v;
    return 0;
  }
  case 'h':
    thaw_config_usage(stdout);
    return 1;
  case O_VERSION:
    thaw_cli_version(stdout, PROG);
    return 1;
  }
  return 2;
}

static int parse(thaw_config_t *c, int argc, char **argv) {
  const char *ns = NULL;
  optind = 0; /* glibc: a full restart, so parse can run more than once */
  opterr = 0; /* our own one-line messages */
  int opt;
  while ((opt = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
    if (opt == ':' || opt == '?')
      return thaw_cli_getopt_bad(PROG, opt, argv);
    int rc = apply(c, opt, optarg ? optarg : "", optarg, &ns);
    if (rc != 0)
      return rc;
  }
  if (optind < argc)
    return bad("unexpected argument %s (see --help)", argv[optind]);
  if (c->registry_url == NULL)
    return bad("--registry-url is required (see --help)");
  if ((c->token_key_file == NULL) != (c->token_cert_file == NULL))
    return bad("--token-key-file and --token-cert-file go together");

  char sa_ns[THAW_NAMESPACE_MAX + 1];
  if (ns == NULL) {
    thaw_system_namespace_default(sa_ns, sizeof sa_ns);
    ns = sa_ns;
  }
  if (!thaw_namespace_valid(ns))
    return bad("--namespace %s: not a namespace name", ns);
  memcpy(c->namespace_, ns, strlen(ns) + 1); /* valid: at most 63 bytes */
  /* the node-local endpoint and the forward are two listeners */
  if (strcasecmp(c->private_cache_host, c->cache_host) == 0)
    return bad("--private-cache-host %s: must differ from --cache-host",
               c->private_cache_host);
  /* fits: the host is at most HOST_MAX bytes */
  thaw_imgref_private_host(c->private_cache_host, c->private_host,
                           sizeof c->private_host);

  /* As kubectl: the flag, else $KUBECONFIG, else in-cluster. */
  const char *env = getenv("KUBECONFIG");
  if (c->kubeconfig == NULL && env != NULL && *env != '\0')
    c->kubeconfig = env;
  return 0;
}

int thaw_config_parse(thaw_config_t *c, int argc, char **argv) {
  memset(c, 0, sizeof *c);
  c->cache_host = "localhost:7439";
  c->private_cache_host = THAW_IMGREF_PRIVATE_CACHE_HOST;
  c->metrics_bind_address = ":8081";
  c->token_bind_address = ":7442";
  c->concurrency = 4;
  c->blob_concurrency = 6;
  c->refresh_interval_ms = 3600ull * 1000;
  c->expire_after_ms = 720ull * 3600 * 1000;
  c->expire_grace_ms = 10ull * 60 * 1000;
  c->repair_after_ms = 30ull * 1000;
  c->gc_interval_ms = 3600ull * 1000;
  c->leader_elect = 1;
  int rc = parse(c, argc, argv);
  if (rc != 0)
    thaw_config_free(c); /* nothing to free for a caller that exits */
  return rc;
}

void thaw_config_free(thaw_config_t *c) {
  if (c == NULL)
    return;
  for (size_t i = 0; i < sizeof c->owned / sizeof *c->owned; i++) {
    free(c->owned[i]);
    c->owned[i] = NULL;
  }
  c->insecure_registries[0] = c->platforms[0] = c->prewarm_namespaces[0] =
      c->exclude_namespaces[0] = NULL;
  c->registry_url = NULL;
}
