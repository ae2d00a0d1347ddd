/* test_config.c - thaw-controller's flags (config.h): Go durations and
 * byte sizes by table; thaw_config_parse for defaults, every flag in both
 * "--flag value" and "--flag=value" forms, the namespace fallbacks, and
 * bad values, which must return 2 with exactly one stderr line starting
 * "thaw-controller: ". */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "config.h"
#include "error.h"

#define H 3600000ull

/* ---- durations -------------------------------------------------------- */

static void test_duration(void) {
  static const struct {
    const char *in;
    int rc;
    uint64_t ms;
  } cases[] = {
      {"0", 0, 0},
      {"+0", 0, 0},
      {"0s", 0, 0},
      {"1h", 0, H},
      {"720h", 0, 720 * H},
      {"1h30m", 0, H + 30 * 60000},
      {"1.5h", 0, H + 30 * 60000},
      {"300ms", 0, 300},
      {"1500us", 0, 1},
      {"1500\xc2\xb5s", 0, 1},
      {"1500\xce\xbcs", 0, 1},
      {"999999ns", 0, 0}, /* rounded down */
      {"1s500ms", 0, 1500},
      {"2m3s", 0, 123000},
      {".5s", 0, 500},
      {"5.s", 0, 5000},
      {"0.001s", 0, 1},
      {"1h1h", 0, 2 * H},
      {"+90s", 0, 90000},
      {"2562047h", 0, 2562047 * H},
      {"9223372036854775807ns", 0, 9223372036854ull},
      {"", THAW_EINVAL, 0},
      {"+", THAW_EINVAL, 0},
      {"1", THAW_EINVAL, 0},
      {"00", THAW_EINVAL, 0},
      {"h", THAW_EINVAL, 0},
      {".s", THAW_EINVAL, 0},
      {".", THAW_EINVAL, 0},
      {"-1s", THAW_EINVAL, 0},
      {"-0s", THAW_EINVAL, 0},
      {"1d", THAW_EINVAL, 0},
      {"1H", THAW_EINVAL, 0},
      {"1 h", THAW_EINVAL, 0},
      {" 1h", THAW_EINVAL, 0},
      {"1h ", THAW_EINVAL, 0},
      {"1h30", THAW_EINVAL, 0},
      {"1.2.3s", THAW_EINVAL, 0},
      {"2562048h", THAW_EINVAL, 0},
      {"9223372036854775808ns", THAW_EINVAL, 0},
      {"99999999999999999999h", THAW_EINVAL, 0},
      {"2562047h2562047h", THAW_EINVAL, 0},
  };
  for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
    uint64_t ms = 12345;
    int rc = thaw_parse_duration(cases[i].in, &ms);
    if (rc != cases[i].rc || (rc == 0 && ms != cases[i].ms))
      fprintf(stderr, "duration '%s': rc %d ms %llu\n", cases[i].in, rc,
              (unsigned long long)ms);
    CHECK(rc == cases[i].rc);
    if (cases[i].rc == 0)
      CHECK(ms == cases[i].ms);
    else
      CHECK(ms == 12345); /* untouched on error */
  }
  uint64_t ms;
  CHECK(thaw_parse_duration(NULL, &ms) == THAW_EINVAL);
}

/* ---- byte sizes ------------------------------------------------------- */

static void test_bytes(void) {
  static const struct {
    const char *in;
    int rc;
    uint64_t v;
  } cases[] = {
      {"0", 0, 0},
      {"1", 0, 1},
      {"123456789", 0, 123456789},
      {"1k", 0, 1000},
      {"2M", 0, 2000000},
      {"200G", 0, 200000000000ull},
      {"3T", 0, 3000000000000ull},
      {"1Ki", 0, 1024},
      {"5Mi", 0, 5ull << 20},
      {"50Gi", 0, 50ull << 30},
      {"2Ti", 0, 2ull << 40},
      {"1.5Gi", 0, 3ull << 29},
      {"0.5k", 0, 500},
      {"1.0001k", 0, 1001},  /* 1000.1 rounds up */
      {"0.1", 0, 1},
      {"18446744073709551615", 0, UINT64_MAX},
      {"16777215Ti", 0, 16777215ull << 40},
      {"", THAW_EINVAL, 0},
      {"k", THAW_EINVAL, 0},
      {"Gi", THAW_EINVAL, 0},
      {".", THAW_EINVAL, 0},
      {"-1", THAW_EINVAL, 0},
      {"+1", THAW_EINVAL, 0},
      {"1K", THAW_EINVAL, 0},
      {"1KB", THAW_EINVAL, 0},
      {"1gi", THAW_EINVAL, 0},
      {"1m", THAW_EINVAL, 0},  /* milli: not a byte count */
      {"1e9", THAW_EINVAL, 0},
      {"1 Gi", THAW_EINVAL, 0},
      {"1Gi ", THAW_EINVAL, 0},
      {"1.2.3", THAW_EINVAL, 0},
      {"18446744073709551616", THAW_EINVAL, 0},
      {"16777216Ti", THAW_EINVAL, 0},
      {"18446744073709551615.5", THAW_EINVAL, 0},
      {"0.0000000000000000001", THAW_EINVAL, 0},
  };
  for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
    uint64_t v = 777;
    int rc = thaw_parse_bytes(cases[i].in, &v);
    if (rc != cases[i].rc || (rc == 0 && v != cases[i].v))
      fprintf(stderr, "bytes '%s': rc %d v %llu\n", cases[i].in, rc,
              (unsigned long long)v);
    CHECK(rc == cases[i].rc);
    if (cases[i].rc == 0)
      CHECK(v == cases[i].v);
    else
      CHECK(v == 777);
  }
  uint64_t v;
  CHECK(thaw_parse_bytes(NULL, &v) == THAW_EINVAL);
}

/* ---- thaw_config_parse ------------------------------------------------ */

static char sa_dir[256]; /* a service-account directory under our control */

/* The config points into argv, so the argument copies live until the end. */
static char *kept[4096];
static size_t nkept;

static void free_kept(void) {
  for (size_t i = 0; i < nkept; i++)
    free(kept[i]);
  nkept = 0;
}

/* Runs thaw_config_parse on a NULL-ended list, capturing stderr and stdout
 * into err/out. */
static int run(thaw_config_t *c, char *err, size_t errlen, char *out,
               size_t outlen, const char *const *args) {
  char *argv[64];
  int argc = 0;
  argv[argc++] = (char *)"thaw-controller";
  for (; *args; args++)
    argv[argc++] = strdup(*args);
  argv[argc] = NULL;
  char *keep[64];
  memcpy(keep, argv, sizeof(char *) * (size_t)(argc + 1)); /* getopt permutes */

  fflush(stderr);
  fflush(stdout);
  FILE *ef = tmpfile(), *of = tmpfile();
  int saved_err = dup(2), saved_out = dup(1);
  dup2(fileno(ef), 2);
  dup2(fileno(of), 1);
  int rc = thaw_config_parse(c, argc, argv);
  fflush(stderr);
  fflush(stdout);
  dup2(saved_err, 2);
  dup2(saved_out, 1);
  close(saved_err);
  close(saved_out);
  rewind(ef);
  rewind(of);
  size_t n = fread(err, 1, errlen - 1, ef);
  err[n] = '\0';
  n = out ? fread(out, 1, outlen - 1, of) : 0;
  if (out)
    out[n] = '\0';
  fclose(ef);
  fclose(of);
  for (int i = 1; i < argc && nkept < sizeof kept / sizeof *kept; i++)
    kept[nkept++] = keep[i];
  return rc;
}

static int ok(thaw_config_t *c, const char *const *args) {
  char err[1024];
  int rc = run(c, err, sizeof err, NULL, 0, args);
  if (rc != 0 || err[0] != '\0')
    fprintf(stderr, "unexpected: rc %d, stderr '%s' for %s\n", rc, err,
            args[0] ? args[0] : "(none)");
  return rc == 0 && err[0] == '\0';
}

static int list_is(const char *const *list, const char *const *want) {
  size_t i = 0;
  for (; want[i]; i++)
    if (list[i] == NULL || strcmp(list[i], want[i]) != 0)
      return 0;
  return list[i] == NULL;
}

static void test_defaults(void) {
  thaw_config_t c;
  unsetenv("KUBECONFIG");
  CHECK(ok(&c, (const char *const[]){"--registry-url", "http://cache:5000",
                                     NULL}));
  CHECK(c.kubeconfig == NULL);
  CHECK(strcmp(c.namespace_, "thaw-system") == 0);
  CHECK(strcmp(c.registry_url, "http://cache:5000") == 0);
  CHECK(strcmp(c.registry_host, "cache:5000") == 0);
  CHECK(c.registry_insecure == 1);
  CHECK(strcmp(c.cache_host, "localhost:7439") == 0);
  CHECK(strcmp(c.private_cache_host, "localhost:7440") == 0);
  CHECK(strcmp(c.private_host, "localhost:7440/private") == 0);
  CHECK(c.insecure_registries[0] == NULL);
  CHECK(c.platforms[0] == NULL);
  CHECK(c.prewarm_namespaces[0] == NULL);
  CHECK(strcmp(c.metrics_bind_address, ":8081") == 0);
  CHECK(c.concurrency == 4);
  CHECK(c.blob_concurrency == 6);
  CHECK(c.refresh_interval_ms == H);
  CHECK(c.expire_after_ms == 720 * H);
  CHECK(c.max_cache_bytes == 0);
  CHECK(c.allow_private == 0);
  CHECK(c.leader_elect == 1);
  CHECK(c.ca_file == NULL);
  CHECK(c.log_level == NULL);
  thaw_config_free(&c);
  thaw_config_free(&c); /* twice is harmless */
  thaw_config_free(NULL);
}

static void test_every_flag(void) {
  thaw_config_t c;
  char ca[300];
  snprintf(ca, sizeof ca, "%s/namespace", sa_dir); /* any readable file */
  /* "--flag value" */
  const char *const sep[] = {
      "--kubeconfig", "/k/config", "--namespace", "ops",
      "--registry-url", "https://Cache.Example:443/",
      "--cache-host", "127.0.0.1:7439",
      "--insecure-registries", "Reg.Local:5000,[::1]:5001,plain",
      "--metrics-bind-address", "127.0.0.1:9090",
      "--concurrency", "256", "--blob-concurrency", "64",
      "--platforms", "linux/amd64,linux/arm/v7,windows/amd64",
      "--refresh-interval", "1m30s", "--expire-after", "168h",
      "--max-cache-bytes", "50Gi",
      "--prewarm-namespaces", "oscar-svc,default",
      "--exclude-namespaces", "oscar,batch-1",
      "--allow-private", "--leader-elect=false",
      "--upstream-ca-file", ca, "--log-level", "debug", NULL};
  CHECK(ok(&c, sep));
  CHECK(strcmp(c.kubeconfig, "/k/config") == 0);
  CHECK(strcmp(c.namespace_, "ops") == 0);
  CHECK(strcmp(c.registry_url, "https://Cache.Example:443") == 0);
  CHECK(strcmp(c.registry_host, "cache.example:443") == 0);
  CHECK(c.registry_insecure == 0);
  CHECK(strcmp(c.cache_host, "127.0.0.1:7439") == 0);
  CHECK(list_is(c.insecure_registries,
                (const char *const[]){"reg.local:5000", "[::1]:5001", "plain",
                                      NULL}));
  CHECK(strcmp(c.metrics_bind_address, "127.0.0.1:9090") == 0);
  CHECK(c.concurrency == 256);
  CHECK(c.blob_concurrency == 64);
  CHECK(list_is(c.exclude_namespaces,
                (const char *const[]){"oscar", "batch-1", NULL}));
  CHECK(list_is(c.platforms, (const char *const[]){"linux/amd64", "linux/arm/v7",
                                                   "windows/amd64", NULL}));
  CHECK(c.refresh_interval_ms == 90000);
  CHECK(c.expire_after_ms == 168 * H);
  CHECK(c.max_cache_bytes == 50ull << 30);
  CHECK(list_is(c.prewarm_namespaces,
                (const char *const[]){"oscar-svc", "default", NULL}));
  CHECK(c.allow_private == 1);
  CHECK(c.leader_elect == 0);
  CHECK(strcmp(c.ca_file, ca) == 0);
  CHECK(strcmp(c.log_level, "debug") == 0);
  thaw_config_free(&c);

  /* "--flag=value", and the last of a repeated flag wins */
  char cafl[320];
  snprintf(cafl, sizeof cafl, "--upstream-ca-file=%s", ca);
  const char *const eq[] = {
      "--kubeconfig=/k2", "--namespace=ns-2",
      "--registry-url=http://[::1]:5000", "--cache-host=cache.local",
      "--private-cache-host=cache.local:7450",
      "--insecure-registries=a.b", "--insecure-registries=c.d:1",
      "--metrics-bind-address=[::1]:0", "--concurrency=1",
      "--blob-concurrency=1", "--platforms=linux/s390x",
      "--refresh-interval=1s", "--expire-after=1.5h",
      "--max-cache-bytes=200G", "--prewarm-namespaces=a",
      "--allow-private=true", "--allow-private=false", "--leader-elect",
      cafl, "--log-level=error", NULL};
  CHECK(ok(&c, eq));
  CHECK(strcmp(c.kubeconfig, "/k2") == 0);
  CHECK(strcmp(c.namespace_, "ns-2") == 0);
  CHECK(strcmp(c.registry_url, "http://[::1]:5000") == 0);
  CHECK(strcmp(c.registry_host, "[::1]:5000") == 0);
  CHECK(c.registry_insecure == 1);
  CHECK(strcmp(c.cache_host, "cache.local") == 0);
  CHECK(strcmp(c.private_host, "cache.local:7450/private") == 0);
  CHECK(list_is(c.insecure_registries, (const char *const[]){"c.d:1", NULL}));
  CHECK(strcmp(c.metrics_bind_address, "[::1]:0") == 0);
  CHECK(c.concurrency == 1 && c.blob_concurrency == 1);
  CHECK(list_is(c.platforms, (const char *const[]){"linux/s390x", NULL}));
  CHECK(c.refresh_interval_ms == 1000);
  CHECK(c.expire_after_ms == H + 30 * 60000);
  CHECK(c.max_cache_bytes == 200000000000ull);
  CHECK(list_is(c.prewarm_namespaces, (const char *const[]){"a", NULL}));
  CHECK(c.allow_private == 0);
  CHECK(c.leader_elect == 1);
  CHECK(strcmp(c.log_level, "error") == 0);
  thaw_config_free(&c);

  /* an empty list value is an empty list; abbreviations as getopt_long */
  CHECK(ok(&c, (const char *const[]){"--registry-url=https://r", "--platforms=",
                                     "--insecure-registries", "",
                                     "--leader-elect=0", NULL}));
  CHECK(c.platforms[0] == NULL && c.insecure_registries[0] == NULL);
  CHECK(c.leader_elect == 0);
  CHECK(strcmp(c.registry_host, "r") == 0);
  thaw_config_free(&c);

  /* 64 list entries fit */
  char many[64 * 4 + 8] = "";
  for (int i = 0; i < THAW_CONFIG_LIST_MAX; i++)
    snprintf(many + strlen(many), sizeof many - strlen(many), "%sn%d",
             i ? "," : "", i);
  CHECK(ok(&c, (const char *const[]){"--registry-url=http://r",
                                     "--prewarm-namespaces", many, NULL}));
  CHECK(c.prewarm_namespaces[63] && strcmp(c.prewarm_namespaces[63], "n63") == 0);
  CHECK(c.prewarm_namespaces[64] == NULL);
  thaw_config_free(&c);
}

static void test_namespace_and_kubeconfig(void) {
  thaw_config_t c;
  char path[300];
  snprintf(path, sizeof path, "%s/namespace", sa_dir);
  FILE *f = fopen(path, "w");
  fputs("from-sa\n", f);
  fclose(f);
  setenv("THAW_SERVICEACCOUNT_DIR", sa_dir, 1);
  setenv("KUBECONFIG", "/env/kubeconfig", 1);
  CHECK(ok(&c, (const char *const[]){"--registry-url=http://r", NULL}));
  CHECK(strcmp(c.namespace_, "from-sa") == 0);
  CHECK(strcmp(c.kubeconfig, "/env/kubeconfig") == 0);
  thaw_config_free(&c);
  /* the flags win */
  CHECK(ok(&c, (const char *const[]){"--registry-url=http://r",
                                     "--namespace=flag-ns",
                                     "--kubeconfig=/flag", NULL}));
  CHECK(strcmp(c.namespace_, "flag-ns") == 0);
  CHECK(strcmp(c.kubeconfig, "/flag") == 0);
  thaw_config_free(&c);
  /* a file that does not hold a namespace name falls back */
  f = fopen(path, "w");
  fputs("Not_A_Namespace", f);
  fclose(f);
  setenv("KUBECONFIG", "", 1); /* empty is unset, as in kubectl */
  CHECK(ok(&c, (const char *const[]){"--registry-url=http://r", NULL}));
  CHECK(strcmp(c.namespace_, "thaw-system") == 0);
  CHECK(c.kubeconfig == NULL);
  thaw_config_free(&c);
  unsetenv("KUBECONFIG");
  f = fopen(path, "w");
  fputs("x", f);
  fclose(f);
}

static void test_help(void) {
  thaw_config_t c;
  char err[256], out[8192];
  CHECK(run(&c, err, sizeof err, out, sizeof out,
            (const char *const[]){"--help", NULL}) == 1);
  CHECK(err[0] == '\0');
  /* every flag is documented, with its default */
  static const char *const needles[] = {
      "--kubeconfig", "--namespace", "thaw-system", "--registry-url",
      "--cache-host", "localhost:7439", "--insecure-registries",
      "--metrics-bind-address", ":8081", "--concurrency", "(default 4)",
      "--blob-concurrency", "--platforms", "every platform",
      "--refresh-interval", "1h", "--expire-after", "720h",
      "--max-cache-bytes", "unbounded", "--prewarm-namespaces",
      "--exclude-namespaces",
      "--allow-private", "default false", "--leader-elect", "default true",
      "--upstream-ca-file", "--log-level", "default info", "--help",
      "--version", NULL};
  for (const char *const *n = needles; *n; n++) {
    int found = strstr(out, *n) != NULL;
    if (!found)
      fprintf(stderr, "usage lacks %s\n", *n);
    CHECK(found);
  }
  thaw_config_free(&c);
}

/* --version: meson's project version on stdout, status as --help. */
static void test_version(void) {
  thaw_config_t c;
  char err[256], out[256];
  CHECK(run(&c, err, sizeof err, out, sizeof out,
            (const char *const[]){"--version", NULL}) == 1);
  CHECK(err[0] == '\0');
  CHECK(strcmp(out, "thaw-controller " THAW_VERSION "\n") == 0);
  thaw_config_free(&c);
}

static void test_bad(void) {
  static const char *const cases[][4] = {
      {NULL},                                    /* --registry-url missing */
      {"--registry-url", NULL},                  /* no value */
      {"--registry-url=ftp://r", NULL},
      {"--registry-url=r:5000", NULL},
      {"--registry-url=http://", NULL},
      {"--registry-url=http://r/path", NULL},
      {"--registry-url=http://u@r", NULL},
      {"--registry-url=http://r:0", NULL},
      {"--registry-url=http://r:99999", NULL},
      {"--registry-url=http://r:", NULL},
      {"--registry-url=http://[::1", NULL},
      {"--registry-url=http://[zz]:1", NULL},
      {"--registry-url=http://-r", NULL},
      {"--registry-url=http://a..b", NULL},
      {"--registry-url=http://r?x", NULL},
      {"--bogus", NULL},
      {"-x", NULL},
      {"stray", NULL},
      {"--help=yes", NULL},
      {"--namespace", "Bad_NS", NULL},
      {"--namespace=", NULL},
      {"--namespace=-a", NULL},
      {"--cache-host=", NULL},
      {"--cache-host=a/b", NULL},
      {"--cache-host=a b", NULL},
      {"--private-cache-host=", NULL},
      {"--private-cache-host=a/private", NULL},
      {"--private-cache-host=localhost:7439", NULL}, /* as --cache-host */
      {"--private-cache-host=LocalHost:7439", NULL},
      {"--insecure-registries=a,,b", NULL},
      {"--insecure-registries=a,", NULL},
      {"--insecure-registries=,a", NULL},
      {"--insecure-registries=a/b", NULL},
      {"--insecure-registries=http://a", NULL},
      {"--metrics-bind-address=8081", NULL},
      {"--metrics-bind-address=host.example:80", NULL},
      {"--metrics-bind-address=:x", NULL},
      {"--metrics-bind-address=:65536", NULL},
      {"--metrics-bind-address=", NULL},
      {"--concurrency=0", NULL},
      {"--concurrency=257", NULL},
      {"--concurrency=-1", NULL},
      {"--concurrency=4x", NULL},
      {"--concurrency=", NULL},
      {"--blob-concurrency=65", NULL},
      {"--blob-concurrency=0", NULL},
      {"--platforms=linux", NULL},
      {"--platforms=linux/", NULL},
      {"--platforms=/amd64", NULL},
      {"--platforms=linux/arm/v7/x", NULL},
      {"--platforms=Linux/amd64", NULL},
      {"--platforms=linux/amd64,", NULL},
      {"--platforms=linux/amd64,,linux/arm64", NULL},
      {"--refresh-interval=1", NULL},
      {"--refresh-interval=0", NULL},
      {"--refresh-interval=999ms", NULL},
      {"--refresh-interval=-1h", NULL},
      {"--refresh-interval=1d", NULL},
      {"--expire-after=", NULL},
      {"--expire-after=0s", NULL},
      {"--expire-after=3000000h", NULL},
      {"--max-cache-bytes=50GB", NULL},
      {"--max-cache-bytes=-1", NULL},
      {"--max-cache-bytes=", NULL},
      {"--prewarm-namespaces=ok,Bad", NULL},
      {"--prewarm-namespaces=a,,b", NULL},
      {"--prewarm-namespaces=,", NULL},
      {"--exclude-namespaces=ok,Bad", NULL},
      {"--exclude-namespaces=a,,b", NULL},
      {"--allow-private=maybe", NULL},
      {"--allow-private=", NULL},
      {"--leader-elect=no", NULL},
      {"--leader-elect", "false", NULL}, /* a bool takes its value with = */
      {"--upstream-ca-file=/nonexistent/ca.pem", NULL},
      {"--upstream-ca-file=", NULL},
      {"--log-level=loud", NULL},
      {"--kubeconfig=", NULL},
  };
  for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
    const char *args[8];
    size_t n = 0;
    /* the case first, so a missing value is reported for it */
    if (i > 1 && strncmp(cases[i][0], "--registry-url", 14) != 0)
      args[n++] = "--registry-url=http://r";
    for (size_t j = 0; cases[i][j]; j++)
      args[n++] = cases[i][j];
    args[n] = NULL;
    thaw_config_t c;
    char err[1024];
    int rc = run(&c, err, sizeof err, NULL, 0, args);
    size_t len = strlen(err);
    int one_line = len > 0 && err[len - 1] == '\n' &&
                   strchr(err, '\n') == err + len - 1;
    int prefixed = strncmp(err, "thaw-controller: ", 17) == 0;
    if (rc != 2 || !one_line || !prefixed)
      fprintf(stderr, "bad case %zu (%s): rc %d, stderr '%s'\n", i,
              cases[i][0] ? cases[i][0] : "(none)", rc, err);
    CHECK(rc == 2);
    CHECK(one_line);
    CHECK(prefixed);
    /* nothing is left allocated after an error */
    for (size_t k = 0; k < sizeof c.owned / sizeof *c.owned; k++)
      CHECK(c.owned[k] == NULL);
    thaw_config_free(&c);
  }

  /* 65 list entries are too many */
  char many[65 * 4 + 8] = "";
  for (int i = 0; i <= THAW_CONFIG_LIST_MAX; i++)
    snprintf(many + strlen(many), sizeof many - strlen(many), "%sn%d",
             i ? "," : "", i);
  thaw_config_t c;
  char err[512];
  CHECK(run(&c, err, sizeof err, NULL, 0,
            (const char *const[]){"--registry-url=http://r",
                                  "--prewarm-namespaces", many, NULL}) == 2);
  CHECK(strncmp(err, "thaw-controller: ", 17) == 0);
}

int main(void) {
  snprintf(sa_dir, sizeof sa_dir, "/tmp/test_config.XXXXXX");
  if (mkdtemp(sa_dir) == NULL)
    return 1;
  char path[300];
  snprintf(path, sizeof path, "%s/namespace", sa_dir);
  FILE *f = fopen(path, "w");
  fputs("x", f); /* a namespace that is also a readable file */
  fclose(f);
  setenv("THAW_SERVICEACCOUNT_DIR", "/nonexistent", 1);

  test_duration();
  test_bytes();
  test_defaults();
  test_every_flag();
  test_help();
  test_version();
  test_bad();
  setenv("THAW_SERVICEACCOUNT_DIR", sa_dir, 1);
  test_namespace_and_kubeconfig();

  free_kept();
  unlink(path);
  rmdir(sa_dir);
  return failures != 0;
}
