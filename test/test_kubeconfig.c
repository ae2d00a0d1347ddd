/* test_kubeconfig.c - table-driven tests of thaw_kube_config_load(): kubeconfig
 * texts written to a temporary directory (input -> expected fields or
 * expected error), then in-cluster configs from a temporary service-account
 * directory via THAW_SERVICEACCOUNT_DIR. Every error must be THAW_ECONFIG,
 * one line, leave the config zeroed and never echo a secret. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "error.h"
#include "kubeconfig.h"

/* Table rows name only the fields they expect; the rest are NULL. */
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"

static int failures;
static char tmp[256]; /* the temporary directory; "@D@" in tables */

#define CHECK(cond, name)                                                      \
  do {                                                                         \
    if (!(cond)) {                                                             \
      fprintf(stderr, "%s:%d: [%s] CHECK failed: %s\n", __FILE__, __LINE__,   \
              (name), #cond);                                                  \
      failures++;                                                              \
    }                                                                          \
  } while (0)

#define CA_PEM "-----BEGIN CERTIFICATE-----\nMIIBdummycert\n-----END CERTIFICATE-----\n"
#define CA_B64 "LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCk1JSUJkdW1teWNlcnQKLS0tLS1FTkQgQ0VSVElGSUNBVEUtLS0tLQo="
#define KEY_PEM "-----BEGIN PRIVATE KEY-----\nSECRETKEYBYTES\n-----END PRIVATE KEY-----\n"
#define KEY_B64 "LS0tLS1CRUdJTiBQUklWQVRFIEtFWS0tLS0tClNFQ1JFVEtFWUJZVEVTCi0tLS0tRU5EIFBSSVZBVEUgS0VZLS0tLS0K"
#define NOTPEM_B64 "anVzdCBzb21lIHRleHQsIG5vdCBwZW0="
#define TOKEN "s3cr3t-t0ken-value"

/* Bits of kubeconfig YAML. */
#define HEAD "apiVersion: v1\nkind: Config\n"
#define CTX(name, cluster, user)                                               \
  "- name: " name "\n  context:\n    cluster: " cluster "\n    user: " user "\n"
#define CLUSTER_CA(name, server)                                               \
  "- name: " name "\n  cluster:\n    server: " server                          \
  "\n    certificate-authority-data: " CA_B64 "\n"
#define USER_TOKEN(name)                                                       \
  "- name: " name "\n  user:\n    token: " TOKEN "\n"
#define SIMPLE(cluster_body, user_body)                                        \
  HEAD "current-context: c\ncontexts:\n" CTX("c", "k", "u")                   \
       "clusters:\n- name: k\n  cluster:\n" cluster_body                       \
       "users:\n- name: u\n  user:\n" user_body

typedef struct {
  const char *name;
  const char *yaml;
  int rc; /* 0 or THAW_ECONFIG */
  const char *err_has;
  /* Expected fields; "@D@" is the temporary directory. */
  const char *server, *ca_file, *ca_pem, *cert_file, *cert_pem, *key_file,
      *key_pem, *token, *token_file, *ns;
  int insecure;
} kc_case_t;

static const kc_case_t cases[] = {
    {"valid token + CA data, trailing slash",
     HEAD "current-context: c\ncontexts:\n" CTX("c", "k", "u")
         "clusters:\n" CLUSTER_CA("k", "https://k.example:6443//")
         "users:\n" USER_TOKEN("u"),
     0, NULL, .server = "https://k.example:6443", .ca_pem = CA_PEM,
     .token = TOKEN},
    {"client cert data + CA file absolute",
     SIMPLE("    server: https://10.0.0.1:6443\n"
            "    certificate-authority: @D@/kc/certs/ca.crt\n",
            "    client-certificate-data: " CA_B64 "\n"
            "    client-key-data: " KEY_B64 "\n"),
     0, NULL, .server = "https://10.0.0.1:6443",
     .ca_file = "@D@/kc/certs/ca.crt", .cert_pem = CA_PEM, .key_pem = KEY_PEM},
    {"cert files relative to the kubeconfig",
     SIMPLE("    server: https://k:443\n"
            "    certificate-authority: certs/ca.crt\n",
            "    client-certificate: certs/client.crt\n"
            "    client-key: ./certs/client.key\n"),
     0, NULL, .server = "https://k:443", .ca_file = "@D@/kc/certs/ca.crt",
     .cert_file = "@D@/kc/certs/client.crt",
     .key_file = "@D@/kc/./certs/client.key"},
    {"insecure-skip-tls-verify",
     SIMPLE("    server: https://k:443\n    insecure-skip-tls-verify: true\n",
            "    token: " TOKEN "\n"),
     0, NULL, .server = "https://k:443", .token = TOKEN, .insecure = 1},
    {"IPv6 literal server",
     SIMPLE("    server: https://[fd00::1]:6443/\n    insecure-skip-tls-verify: yes\n",
            "    token: " TOKEN "\n"),
     0, NULL, .server = "https://[fd00::1]:6443", .token = TOKEN, .insecure = 1},
    {"insecure false is not insecure",
     SIMPLE("    server: https://k:443\n    insecure-skip-tls-verify: false\n",
            "    token: " TOKEN "\n"),
     0, NULL, .server = "https://k:443", .token = TOKEN},
    {"namespace from context",
     HEAD "current-context: c\ncontexts:\n- name: c\n  context:\n"
          "    cluster: k\n    user: u\n    namespace: team-a\n"
          "clusters:\n" CLUSTER_CA("k", "https://k") "users:\n" USER_TOKEN("u"),
     0, NULL, .server = "https://k", .ca_pem = CA_PEM, .token = TOKEN,
     .ns = "team-a"},
    {"multiple contexts, current one picked",
     HEAD "current-context: \"second\"\ncontexts:\n" CTX("first", "k1", "u1")
         CTX("second", "k2", "u2") "clusters:\n"
         CLUSTER_CA("k1", "https://one") CLUSTER_CA("k2", "https://two:8443/")
         "users:\n- name: u1\n  user:\n    token: wrong\n"
         "- name: u2\n  user:\n    tokenFile: tok\n",
     0, NULL, .server = "https://two:8443", .ca_pem = CA_PEM,
     .token_file = "@D@/kc/tok"},
    {"token wins over tokenFile",
     SIMPLE("    server: https://k\n    certificate-authority-data: " CA_B64 "\n",
            "    token: " TOKEN "\n    tokenFile: tok\n"),
     0, NULL, .server = "https://k", .ca_pem = CA_PEM, .token = TOKEN},
    {"anonymous over plain http (kubectl proxy, emulator)",
     HEAD "current-context: c\ncontexts:\n- name: c\n  context:\n"
          "    cluster: k\nclusters:\n- name: k\n  cluster:\n"
          "    server: http://127.0.0.1:8001\n",
     0, NULL, .server = "http://127.0.0.1:8001"},
    {"anonymous https with a CA",
     HEAD "current-context: c\ncontexts:\n- name: c\n  context: {cluster: k}\n"
          "clusters:\n" CLUSTER_CA("k", "https://k"),
     0, NULL, .server = "https://k", .ca_pem = CA_PEM},
    {"flow style and CRLF line ends",
     "{\"current-context\": \"c\", \"contexts\": [{\"name\": \"c\", "
     "\"context\": {\"cluster\": \"k\", \"user\": \"u\"}}],\r\n"
     "\"clusters\": [{\"name\": \"k\", \"cluster\": {\"server\": "
     "\"https://k\", \"insecure-skip-tls-verify\": true}}],\r\n"
     "\"users\": [{\"name\": \"u\", \"user\": {\"token\": \"" TOKEN "\"}}]}\r\n",
     0, NULL, .server = "https://k", .token = TOKEN, .insecure = 1},

    /* Errors. */
    {"anonymous https without CA",
     HEAD "current-context: c\ncontexts:\n- name: c\n  context: {cluster: k}\n"
          "clusters:\n- name: k\n  cluster: {server: \"https://k\"}\n",
     THAW_ECONFIG, "no credentials"},
    {"empty file", "", THAW_ECONFIG, "empty"},
    {"only a comment", "# nothing\n", THAW_ECONFIG, "empty"},
    {"garbled YAML", "apiVersion: v1\nclusters: [\n  - {name: x\n  :: ]]\n",
     THAW_ECONFIG, "not valid YAML"},
    {"tab indentation", "a:\n\tb: c\n", THAW_ECONFIG, "not valid YAML"},
    {"a list", "- a\n- b\n", THAW_ECONFIG, "not a YAML mapping"},
    {"a scalar", "hello\n", THAW_ECONFIG, "not a YAML mapping"},
    {"no current-context",
     HEAD "contexts:\n" CTX("c", "k", "u") "clusters:\n" CLUSTER_CA("k", "https://k"),
     THAW_ECONFIG, "no current-context"},
    {"empty current-context", HEAD "current-context: \"\"\n", THAW_ECONFIG,
     "no current-context"},
    {"current-context is a mapping", HEAD "current-context: {a: b}\n",
     THAW_ECONFIG, "current-context is not a string"},
    {"context not found",
     HEAD "current-context: foo\ncontexts:\n" CTX("c", "k", "u"),
     THAW_ECONFIG, "context \"foo\" not found"},
    {"no contexts at all", HEAD "current-context: foo\n", THAW_ECONFIG,
     "context \"foo\" not found"},
    {"contexts is not a list",
     HEAD "current-context: foo\ncontexts: {foo: bar}\n", THAW_ECONFIG,
     "contexts is not a list"},
    {"context without cluster",
     HEAD "current-context: c\ncontexts:\n- name: c\n  context: {user: u}\n",
     THAW_ECONFIG, "context \"c\" has no cluster"},
    {"context entry without mapping",
     HEAD "current-context: c\ncontexts:\n- name: c\n", THAW_ECONFIG,
     "context \"c\" has no context mapping"},
    {"cluster not found",
     HEAD "current-context: c\ncontexts:\n" CTX("c", "k2", "u")
         "clusters:\n" CLUSTER_CA("k", "https://k") "users:\n" USER_TOKEN("u"),
     THAW_ECONFIG, "cluster \"k2\" not found"},
    {"user not found",
     HEAD "current-context: c\ncontexts:\n" CTX("c", "k", "u9")
         "clusters:\n" CLUSTER_CA("k", "https://k") "users:\n" USER_TOKEN("u"),
     THAW_ECONFIG, "user \"u9\" not found"},
    {"no server", SIMPLE("    insecure-skip-tls-verify: true\n", "    token: " TOKEN "\n"),
     THAW_ECONFIG, "cluster \"k\" has no server"},
    {"server without scheme",
     SIMPLE("    server: k.example:6443\n", "    token: " TOKEN "\n"),
     THAW_ECONFIG, "server must start with https://"},
    {"server ftp", SIMPLE("    server: ftp://k\n", "    token: " TOKEN "\n"),
     THAW_ECONFIG, "server must start with https://"},
    {"server without host", SIMPLE("    server: https:///\n", "    token: " TOKEN "\n"),
     THAW_ECONFIG, "server has no host"},
    {"bad base64 CA",
     SIMPLE("    server: https://k\n    certificate-authority-data: '!!notbase64'\n",
            "    token: " TOKEN "\n"),
     THAW_ECONFIG, "certificate-authority-data is not valid base64"},
    {"truncated base64 key",
     SIMPLE("    server: https://k\n    insecure-skip-tls-verify: true\n",
            "    client-certificate-data: " CA_B64 "\n    client-key-data: LS0tLS1CRUdJ\n"),
     THAW_ECONFIG, "client-key-data is not"},
    {"base64 of something that is not PEM",
     SIMPLE("    server: https://k\n    certificate-authority-data: " NOTPEM_B64 "\n",
            "    token: " TOKEN "\n"),
     THAW_ECONFIG, "not base64 of PEM data"},
    {"CA together with insecure",
     SIMPLE("    server: https://k\n    insecure-skip-tls-verify: true\n"
            "    certificate-authority-data: " CA_B64 "\n",
            "    token: " TOKEN "\n"),
     THAW_ECONFIG, "together with insecure-skip-tls-verify"},
    {"insecure not a boolean",
     SIMPLE("    server: https://k\n    insecure-skip-tls-verify: maybe\n",
            "    token: " TOKEN "\n"),
     THAW_ECONFIG, "insecure-skip-tls-verify is not a boolean"},
    {"CA file missing",
     SIMPLE("    server: https://k\n    certificate-authority: nope/ca.crt\n",
            "    token: " TOKEN "\n"),
     THAW_ECONFIG, "certificate-authority @D@/kc/nope/ca.crt"},
    {"tokenFile missing",
     SIMPLE("    server: https://k\n    insecure-skip-tls-verify: true\n",
            "    tokenFile: /nonexistent/token\n"),
     THAW_ECONFIG, "tokenFile /nonexistent/token"},
    {"certificate without key",
     SIMPLE("    server: https://k\n    insecure-skip-tls-verify: true\n",
            "    client-certificate-data: " CA_B64 "\n"),
     THAW_ECONFIG, "needs a client key"},
    {"key without certificate",
     SIMPLE("    server: https://k\n    insecure-skip-tls-verify: true\n",
            "    client-key-data: " KEY_B64 "\n"),
     THAW_ECONFIG, "needs a certificate"},
    {"exec plugin",
     SIMPLE("    server: https://k\n    certificate-authority-data: " CA_B64 "\n",
            "    token: " TOKEN "\n    exec:\n      command: aws\n"),
     THAW_ECONFIG, "exec credential plugins are not supported"},
    {"auth-provider",
     SIMPLE("    server: https://k\n    certificate-authority-data: " CA_B64 "\n",
            "    auth-provider:\n      name: gcp\n"),
     THAW_ECONFIG, "auth-provider plugins are not supported"},
    {"username/password",
     SIMPLE("    server: https://k\n    certificate-authority-data: " CA_B64 "\n",
            "    username: admin\n    password: " TOKEN "\n"),
     THAW_ECONFIG, "basic auth (username/password) is not supported"},
    {"token is a list",
     SIMPLE("    server: https://k\n    insecure-skip-tls-verify: true\n",
            "    token: [a, b]\n"),
     THAW_ECONFIG, "user \"u\": token is not a string"},
    {"newline in a name stays on one line",
     HEAD "current-context: \"evil\\nname\"\n", THAW_ECONFIG,
     "context \"evil?name\" not found"},
    {"NUL in a value", HEAD "current-context: \"a\\0b\"\n", THAW_ECONFIG,
     "current-context is not a string"},
};

static char *subst(const char *s) {
  size_t n = strlen(s) + 1;
  for (const char *p = s; (p = strstr(p, "@D@")); p += 3)
    n += strlen(tmp);
  char *out = malloc(n), *o = out;
  while (*s) {
    if (strncmp(s, "@D@", 3) == 0) {
      memcpy(o, tmp, strlen(tmp));
      o += strlen(tmp);
      s += 3;
    } else {
      *o++ = *s++;
    }
  }
  *o = '\0';
  return out;
}

static void write_file(const char *path, const char *data, size_t len) {
  FILE *f = fopen(path, "wb");
  if (f == NULL || fwrite(data, 1, len, f) != len) {
    perror(path);
    exit(2);
  }
  fclose(f);
}

static void check_str(const char *name, const char *field, const char *got,
                      const char *want) {
  char *w = want ? subst(want) : NULL;
  if ((got == NULL) != (w == NULL) || (got && strcmp(got, w) != 0)) {
    fprintf(stderr, "[%s] %s = %s%s%s, expected %s%s%s\n", name, field,
            got ? "\"" : "", got ? got : "NULL", got ? "\"" : "",
            w ? "\"" : "", w ? w : "NULL", w ? "\"" : "");
    failures++;
  }
  free(w);
}

static int is_zero(const thaw_kube_config_t *c) {
  static const thaw_kube_config_t z;
  return memcmp(c, &z, sizeof(z)) == 0;
}

/* Checks the outcome of one load against expectations. */
static void expect(const char *name, int rc, const char *err,
                   thaw_kube_config_t *cfg, const kc_case_t *k) {
  if (rc != k->rc) {
    fprintf(stderr, "[%s] rc %d (%s), expected %d; err: %s\n", name, rc,
            thaw_err_name(rc), k->rc, err);
    failures++;
  }
  if (k->rc != 0) {
    char *want = subst(k->err_has);
    CHECK(err[0] != '\0', name);
    CHECK(strchr(err, '\n') == NULL && strchr(err, '\r') == NULL, name);
    if (strstr(err, want) == NULL) {
      fprintf(stderr, "[%s] err \"%s\" lacks \"%s\"\n", name, err, want);
      failures++;
    }
    free(want);
    CHECK(is_zero(cfg), name);
  } else {
    CHECK(err[0] == '\0', name);
    check_str(name, "server", cfg->server, k->server);
    check_str(name, "ca_file", cfg->ca_file, k->ca_file);
    check_str(name, "ca_pem", cfg->ca_pem, k->ca_pem);
    check_str(name, "cert_file", cfg->cert_file, k->cert_file);
    check_str(name, "cert_pem", cfg->cert_pem, k->cert_pem);
    check_str(name, "key_file", cfg->key_file, k->key_file);
    check_str(name, "key_pem", cfg->key_pem, k->key_pem);
    check_str(name, "token", cfg->token, k->token);
    check_str(name, "token_file", cfg->token_file, k->token_file);
    check_str(name, "namespace", cfg->namespace, k->ns);
    CHECK(cfg->insecure_skip_tls_verify == k->insecure, name);
  }
  /* Secrets never reach the message. */
  CHECK(strstr(err, TOKEN) == NULL, name);
  CHECK(strstr(err, "SECRETKEYBYTES") == NULL, name);
  CHECK(strstr(err, "LS0tLS1") == NULL, name);
  thaw_kube_config_free(cfg);
}

static void load_case(const kc_case_t *k, const char *text, size_t len) {
  char path[512], err[512];
  snprintf(path, sizeof(path), "%s/kc/config", tmp);
  write_file(path, text, len);
  thaw_kube_config_t cfg;
  memset(&cfg, 0xab, sizeof(cfg)); /* load must not rely on a zeroed cfg */
  memset(err, 'x', sizeof(err));
  int rc = thaw_kube_config_load(&cfg, path, err, sizeof(err));
  expect(k->name, rc, err, &cfg, k);
}

static void test_table(void) {
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    char *text = subst(cases[i].yaml);
    load_case(&cases[i], text, strlen(text));
    free(text);
  }
  fprintf(stderr, "kubeconfig table: %zu cases\n",
          sizeof(cases) / sizeof(cases[0]));
}

/* Cases whose input is not a C string or not a file. */
static void test_special_inputs(void) {
  char err[512], path[512];
  thaw_kube_config_t cfg;

  static const char junk[] = "\x7f"
                             "ELF\x02\x01\x01\x00\x00\xff\xfe\x00\x01\x9c"
                             "binary\x00\x00junk\x80\x81";
  kc_case_t k = {"binary junk", NULL, THAW_ECONFIG, "not valid YAML"};
  load_case(&k, junk, sizeof(junk));

  /* Over 1 MiB, even though it is valid YAML. */
  size_t big = 1024 * 1024 + 100;
  char *text = malloc(big);
  memset(text, '#', big);
  text[big - 1] = '\n';
  k = (kc_case_t){"oversized", NULL, THAW_ECONFIG, "larger than"};
  load_case(&k, text, big);
  free(text);

  /* Deep flow nesting is refused before libyaml (quadratic in depth). */
  size_t deep = 200000;
  text = malloc(2 * deep + 8);
  memcpy(text, "a: ", 3);
  memset(text + 3, '[', deep);
  memset(text + 3 + deep, ']', deep);
  text[3 + 2 * deep] = '\n';
  k = (kc_case_t){"deep nesting", NULL, THAW_ECONFIG, "nested deeper than"};
  load_case(&k, text, 4 + 2 * deep);
  free(text);

  /* Aliases are shared nodes, not expanded copies ("billion laughs"). */
  static const char laughs[] =
      "current-context: c\n"
      "a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n"
      "b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
      "c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]\n"
      "d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]\n"
      "e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d]\n"
      "f: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e]\n"
      "g: &g [*f, *f, *f, *f, *f, *f, *f, *f, *f]\n"
      "h: &h [*g, *g, *g, *g, *g, *g, *g, *g, *g]\n"
      "contexts: *h\n";
  k = (kc_case_t){"alias bomb", NULL, THAW_ECONFIG, "context \"c\" not found"};
  load_case(&k, laughs, strlen(laughs));

  k = (kc_case_t){"missing file", NULL, THAW_ECONFIG,
                  "kubeconfig @D@/nope/config: cannot read: No such file"};
  snprintf(path, sizeof(path), "%s/nope/config", tmp);
  int rc = thaw_kube_config_load(&cfg, path, err, sizeof(err));
  expect(k.name, rc, err, &cfg, &k);

  k = (kc_case_t){"a directory", NULL, THAW_ECONFIG, "cannot read"};
  rc = thaw_kube_config_load(&cfg, tmp, err, sizeof(err));
  expect(k.name, rc, err, &cfg, &k);

  if (geteuid() != 0) { /* root reads anything */
    snprintf(path, sizeof(path), "%s/unreadable", tmp);
    write_file(path, "a: b\n", 5);
    chmod(path, 0);
    k = (kc_case_t){"unreadable", NULL, THAW_ECONFIG, "Permission denied"};
    rc = thaw_kube_config_load(&cfg, path, err, sizeof(err));
    expect(k.name, rc, err, &cfg, &k);
  }

  /* A kubeconfig in the current directory, given without a '/'. */
  char cwd[512];
  CHECK(getcwd(cwd, sizeof(cwd)) != NULL, "cwd");
  snprintf(path, sizeof(path), "%s/kc", tmp);
  CHECK(chdir(path) == 0, "chdir");
  write_file("config2",
             SIMPLE("    server: https://k\n    certificate-authority: certs/ca.crt\n",
                    "    token: x\n"),
             strlen(SIMPLE("    server: https://k\n    certificate-authority: "
                           "certs/ca.crt\n", "    token: x\n")));
  rc = thaw_kube_config_load(&cfg, "config2", err, sizeof(err));
  CHECK(rc == 0, "relative kubeconfig path");
  CHECK(cfg.ca_file && strcmp(cfg.ca_file, "certs/ca.crt") == 0,
        "relative kubeconfig path");
  thaw_kube_config_free(&cfg);
  CHECK(chdir(cwd) == 0, "chdir back");

  /* No error buffer, or a tiny one: still the right code. */
  snprintf(path, sizeof(path), "%s/nope", tmp);
  CHECK(thaw_kube_config_load(&cfg, path, NULL, 0) == THAW_ECONFIG, "no err");
  CHECK(thaw_kube_config_load(&cfg, path, err, 6) == THAW_ECONFIG, "small");
  CHECK(strlen(err) == 5, "small err truncated");
  CHECK(thaw_kube_config_load(NULL, path, err, sizeof(err)) == THAW_EINVAL,
        "NULL cfg");
}

/* ---- in-cluster ---- */

typedef struct {
  const char *name;
  const char *host, *port; /* NULL: unset */
  int files;               /* bit 1 token, 2 ca.crt, 4 namespace */
  const char *ns_text;
  int rc;
  const char *err_has;
  const char *server, *ns;
} ic_case_t;

static const ic_case_t ic_cases[] = {
    {"in-cluster IPv4", "10.96.0.1", "443", 7, "thaw-system\n", 0, NULL,
     "https://10.96.0.1:443", "thaw-system"},
    {"in-cluster IPv6", "fd00:10:96::1", "6443", 7, "ns1", 0, NULL,
     "https://[fd00:10:96::1]:6443", "ns1"},
    {"in-cluster DNS host, no namespace file", "kubernetes.default.svc", "443",
     3, NULL, 0, NULL, "https://kubernetes.default.svc:443", NULL},
    {"in-cluster missing host", NULL, "443", 7, "x", THAW_ECONFIG,
     "KUBERNETES_SERVICE_HOST"},
    {"in-cluster missing port", "10.0.0.1", NULL, 7, "x", THAW_ECONFIG,
     "KUBERNETES_SERVICE_PORT"},
    {"in-cluster bad port", "10.0.0.1", "44x3", 7, "x", THAW_ECONFIG,
     "KUBERNETES_SERVICE_PORT is not a port"},
    {"in-cluster port 0", "10.0.0.1", "0", 7, "x", THAW_ECONFIG,
     "not a port"},
    {"in-cluster host with slash", "10.0.0.1/x", "443", 7, "x", THAW_ECONFIG,
     "not a host"},
    {"in-cluster missing token", "10.0.0.1", "443", 6, "x", THAW_ECONFIG,
     "/sa/token: No such file"},
    {"in-cluster missing ca.crt", "10.0.0.1", "443", 5, "x", THAW_ECONFIG,
     "/sa/ca.crt: No such file"},
};

static void test_in_cluster(void) {
  char dir[512], path[600], err[512];
  snprintf(dir, sizeof(dir), "%s/sa", tmp);
  mkdir(dir, 0700);
  setenv("THAW_SERVICEACCOUNT_DIR", dir, 1);
  static const char *names[] = {"token", "ca.crt", "namespace"};
  for (size_t i = 0; i < sizeof(ic_cases) / sizeof(ic_cases[0]); i++) {
    const ic_case_t *c = &ic_cases[i];
    for (int f = 0; f < 3; f++) {
      snprintf(path, sizeof(path), "%s/%s", dir, names[f]);
      unlink(path);
      if (c->files & (1 << f)) {
        const char *text = f == 0 ? TOKEN : f == 1 ? CA_PEM : c->ns_text;
        write_file(path, text, strlen(text));
      }
    }
    if (c->host)
      setenv("KUBERNETES_SERVICE_HOST", c->host, 1);
    else
      unsetenv("KUBERNETES_SERVICE_HOST");
    if (c->port)
      setenv("KUBERNETES_SERVICE_PORT", c->port, 1);
    else
      unsetenv("KUBERNETES_SERVICE_PORT");
    thaw_kube_config_t cfg;
    memset(&cfg, 0xab, sizeof(cfg));
    int rc = thaw_kube_config_load(&cfg, NULL, err, sizeof(err));
    char tok[600], ca[600];
    snprintf(tok, sizeof(tok), "%s/token", dir);
    snprintf(ca, sizeof(ca), "%s/ca.crt", dir);
    kc_case_t k = {.name = c->name, .rc = c->rc, .err_has = c->err_has,
                   .server = c->server, .ns = c->ns,
                   .token_file = c->rc ? NULL : tok,
                   .ca_file = c->rc ? NULL : ca};
    expect(c->name, rc, err, &cfg, &k);
  }
  unsetenv("KUBERNETES_SERVICE_HOST");
  unsetenv("KUBERNETES_SERVICE_PORT");
  unsetenv("THAW_SERVICEACCOUNT_DIR");
}

int main(void) {
  snprintf(tmp, sizeof(tmp), "/tmp/thaw-kubeconfig-XXXXXX");
  if (mkdtemp(tmp) == NULL) {
    perror("mkdtemp");
    return 2;
  }
  char p[600];
  snprintf(p, sizeof(p), "%s/kc", tmp);
  mkdir(p, 0700);
  snprintf(p, sizeof(p), "%s/kc/certs", tmp);
  mkdir(p, 0700);
  static const char *files[][2] = {{"kc/certs/ca.crt", CA_PEM},
                                   {"kc/certs/client.crt", CA_PEM},
                                   {"kc/certs/client.key", KEY_PEM},
                                   {"kc/tok", TOKEN}};
  for (size_t i = 0; i < 4; i++) {
    snprintf(p, sizeof(p), "%s/%s", tmp, files[i][0]);
    write_file(p, files[i][1], strlen(files[i][1]));
  }

  test_table();
  test_special_inputs();
  test_in_cluster();

  char cmd[600];
  snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmp);
  if (system(cmd) != 0)
    fprintf(stderr, "could not remove %s\n", tmp);
  if (failures) {
    fprintf(stderr, "test_kubeconfig: %d failure(s)\n", failures);
    return 1;
  }
  fprintf(stderr, "test_kubeconfig: all passed\n");
  return 0;
}
