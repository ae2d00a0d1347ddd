/* kubeconfig.c - thaw_kube_config_load() of kubeconfig.h: in-cluster service
 * account or a kubeconfig file's current-context. (Copy, free and the token
 * cache live in kubecreds.c.)
 *
 * Decisions, where kubectl leaves room:
 * - server must be https:// or http://. Plain http is accepted for
 *   `kubectl proxy` and the test API emulator; it sends credentials in clear,
 *   so it is the operator's choice. Anything else is an error. Trailing '/'
 *   are stripped.
 * - certificate-authority-data wins over certificate-authority, token over
 *   tokenFile, *-data over the file for client cert and key (as client-go).
 *   CA together with insecure-skip-tls-verify is an error (as client-go).
 * - Referenced files must be readable at load time so a typo fails at
 *   start-up, not on the first request. Their contents are not read here.
 * - No credentials at all is allowed (anonymous) only over plain http or
 *   when a CA is given; anonymous TLS without a CA is almost surely a mistake.
 * - tls-server-name and proxy-url are ignored; exec, auth-provider and
 *   username/password are rejected with "not supported".
 * - In-cluster, the namespace file is optional (NULL when absent); token and
 *   ca.crt are required.
 * Error messages name keys, files and object names, never values of tokens,
 * keys or passwords. */
#include "kubeconfig.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <openssl/evp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>
#include <yaml.h>

#include "error.h"

#define KUBECONFIG_MAX (1024 * 1024) /* larger files are refused */
#define NAMESPACE_MAX 1024           /* bytes read of the namespace file */
#define QUOTE_MAX 96                 /* bytes of a name quoted in errors */
#define FLOW_DEPTH_MAX 256           /* libyaml is quadratic in [[[[ depth */
#define SA_DIR "/var/run/secrets/kubernetes.io/serviceaccount"

typedef struct {
  const char *what; /* "kubeconfig /x" or "in-cluster config" */
  char *err;
  size_t errlen;
  yaml_document_t *doc;
  char dir[PATH_MAX]; /* directory of the kubeconfig, "" for the cwd */
} ctx_t;

/* Writes "<what>: <reason>" into err as one printable line. */
static int fail(ctx_t *c, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int fail(ctx_t *c, int code, const char *fmt, ...) {
  if (c->err == NULL || c->errlen == 0)
    return code;
  int n = snprintf(c->err, c->errlen, "%s: ", c->what);
  if (n >= 0 && (size_t)n < c->errlen) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->err + n, c->errlen - (size_t)n, fmt, ap);
    va_end(ap);
  }
  /* Paths and names come from the user: keep the message on one line. */
  for (char *p = c->err; *p; p++)
    if ((unsigned char)*p < 0x20 || *p == 0x7f)
      *p = '?';
  return code;
}

static int oom(ctx_t *c) { return fail(c, THAW_ENOMEM, "out of memory"); }

/* A short, printable copy of a user-chosen name for error messages. */
static const char *q(const char *s, char buf[QUOTE_MAX + 4]) {
  size_t n = strnlen(s, QUOTE_MAX + 1);
  if (n > QUOTE_MAX) {
    memcpy(buf, s, QUOTE_MAX);
    memcpy(buf + QUOTE_MAX, "...", 4);
  } else {
    memcpy(buf, s, n + 1);
  }
  return buf;
}

static void cfg_clear(thaw_kube_config_t *cfg) {
  free(cfg->server);
  free(cfg->ca_file);
  free(cfg->ca_pem);
  free(cfg->cert_file);
  free(cfg->cert_pem);
  free(cfg->key_file);
  free(cfg->key_pem);
  free(cfg->token);
  free(cfg->token_file);
  free(cfg->namespace);
  memset(cfg, 0, sizeof(*cfg));
}

/* Reads at most max bytes; returns 0, THAW_E2BIG or a negative errno. */
static int read_file(const char *path, size_t max, char **out, size_t *len) {
  *out = NULL;
  *len = 0;
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return -errno;
  int rc = 0;
  struct stat st;
  char *buf = NULL;
  if (fstat(fd, &st) != 0) {
    rc = -errno;
    goto fail;
  }
  if (S_ISDIR(st.st_mode)) {
    rc = -EISDIR;
    goto fail;
  }
  buf = malloc(max + 2);
  if (buf == NULL) {
    rc = THAW_ENOMEM;
    goto fail;
  }
  size_t n = 0;
  while (n <= max) { /* one byte past max tells "too large" */
    ssize_t r = read(fd, buf + n, max + 1 - n);
    if (r < 0 && errno == EINTR)
      continue;
    if (r < 0) {
      rc = -errno;
      goto fail;
    }
    if (r == 0)
      break;
    n += (size_t)r;
  }
  if (n > max) {
    rc = THAW_E2BIG;
    goto fail;
  }
  buf[n] = '\0';
  close(fd);
  *out = buf;
  *len = n;
  return 0;
fail:
  free(buf);
  close(fd);
  return rc;
}

/* ---- YAML helpers (document API; aliases are shared nodes, not copies) */

static yaml_node_t *map_get(yaml_document_t *doc, yaml_node_t *map,
                            const char *key) {
  if (map == NULL || map->type != YAML_MAPPING_NODE)
    return NULL;
  size_t klen = strlen(key);
  for (yaml_node_pair_t *p = map->data.mapping.pairs.start;
       p < map->data.mapping.pairs.top; p++) {
    yaml_node_t *k = yaml_document_get_node(doc, p->key);
    if (k && k->type == YAML_SCALAR_NODE && k->data.scalar.length == klen &&
        memcmp(k->data.scalar.value, key, klen) == 0)
      return yaml_document_get_node(doc, p->value);
  }
  return NULL;
}

/* A scalar's text, or NULL when absent, null or not a scalar. `bad` is set
 * when present but unusable (a mapping, a list or an embedded NUL). */
static const char *scalar(yaml_node_t *n, int *bad) {
  *bad = 0;
  if (n == NULL)
    return NULL;
  if (n->type != YAML_SCALAR_NODE) {
    *bad = 1;
    return NULL;
  }
  const char *v = (const char *)n->data.scalar.value;
  size_t len = n->data.scalar.length;
  if (strlen(v) != len) {
    *bad = 1;
    return NULL;
  }
  /* A plain "null" or "~" or nothing is YAML's null. */
  if (n->data.scalar.style == YAML_PLAIN_SCALAR_STYLE &&
      (len == 0 || strcmp(v, "~") == 0 || strcmp(v, "null") == 0 ||
       strcmp(v, "Null") == 0 || strcmp(v, "NULL") == 0))
    return NULL;
  return v;
}

/* Gets string field `key` of `map` into *out (NULL when absent or empty). */
static int get_str(ctx_t *c, yaml_node_t *map, const char *key,
                   const char *where, const char **out) {
  int bad;
  *out = scalar(map_get(c->doc, map, key), &bad);
  if (bad)
    return fail(c, THAW_ECONFIG, "%s: %s is not a string", where, key);
  if (*out && **out == '\0')
    *out = NULL;
  return 0;
}

/* In list `list_key` of the root, the entry whose name is `name`; returns its
 * `field` mapping. */
static int find_named(ctx_t *c, const char *list_key, const char *kind,
                      const char *name, const char *field,
                      yaml_node_t **out) {
  char qb[QUOTE_MAX + 4];
  yaml_node_t *list =
      map_get(c->doc, yaml_document_get_root_node(c->doc), list_key);
  *out = NULL;
  if (list && list->type == YAML_SEQUENCE_NODE) {
    for (yaml_node_item_t *i = list->data.sequence.items.start;
         i < list->data.sequence.items.top; i++) {
      yaml_node_t *e = yaml_document_get_node(c->doc, *i);
      int bad;
      const char *n = scalar(map_get(c->doc, e, "name"), &bad);
      if (n == NULL || strcmp(n, name) != 0)
        continue;
      yaml_node_t *f = map_get(c->doc, e, field);
      if (f == NULL || f->type != YAML_MAPPING_NODE)
        return fail(c, THAW_ECONFIG, "%s \"%s\" has no %s mapping", kind,
                    q(name, qb), field);
      *out = f;
      return 0;
    }
  } else if (list && !(list->type == YAML_SCALAR_NODE &&
                       scalar(list, &(int){0}) == NULL)) {
    return fail(c, THAW_ECONFIG, "%s is not a list", list_key);
  }
  return fail(c, THAW_ECONFIG, "%s \"%s\" not found", kind, q(name, qb));
}

/* ---- values ---- */

static int dup_to(ctx_t *c, char **dst, const char *s, size_t n) {
  *dst = strndup(s, n);
  return *dst ? 0 : oom(c);
}

/* Resolves `p` against the kubeconfig's directory and checks it is
 * readable. */
static int file_ref(ctx_t *c, const char *where, const char *key,
                    const char *p, char **out) {
  char buf[PATH_MAX];
  if (p[0] != '/' && c->dir[0] != '\0') {
    int n = snprintf(buf, sizeof(buf), "%s/%s", c->dir, p);
    if (n < 0 || (size_t)n >= sizeof(buf))
      return fail(c, THAW_ECONFIG, "%s: %s: path too long", where, key);
    p = buf;
  } else if (strlen(p) >= sizeof(buf)) {
    return fail(c, THAW_ECONFIG, "%s: %s: path too long", where, key);
  }
  if (access(p, R_OK) != 0)
    return fail(c, THAW_ECONFIG, "%s: %s %s: %s", where, key, p,
                strerror(errno));
  return dup_to(c, out, p, strlen(p));
}

/* Decodes base64 PEM; rejects garbage and anything that is not PEM text. */
static int pem_data(ctx_t *c, const char *where, const char *key,
                    const char *b64, char **out) {
  size_t len = strlen(b64);
  unsigned char *buf = malloc(len / 4 * 3 + 4);
  EVP_ENCODE_CTX *e = EVP_ENCODE_CTX_new();
  if (buf == NULL || e == NULL) {
    free(buf);
    EVP_ENCODE_CTX_free(e);
    return oom(c);
  }
  int n = 0, m = 0, ok = 1;
  EVP_DecodeInit(e);
  if (len > INT_MAX ||
      EVP_DecodeUpdate(e, buf, &n, (const unsigned char *)b64, (int)len) < 0 ||
      EVP_DecodeFinal(e, buf + n, &m) < 0)
    ok = 0;
  EVP_ENCODE_CTX_free(e);
  size_t total = ok ? (size_t)n + (size_t)m : 0;
  if (ok) {
    buf[total] = '\0';
    if (total == 0 || memchr(buf, '\0', total) != NULL ||
        strstr((char *)buf, "-----BEGIN ") == NULL)
      ok = 2;
  }
  if (ok != 1) {
    OPENSSL_cleanse(buf, total);
    free(buf);
    return fail(c, THAW_ECONFIG, "%s: %s is %s", where, key,
                ok == 0 ? "not valid base64" : "not base64 of PEM data");
  }
  *out = (char *)buf;
  return 0;
}

static int parse_bool(ctx_t *c, yaml_node_t *map, const char *key,
                      const char *where, int *out) {
  const char *v;
  int rc = get_str(c, map, key, where, &v);
  *out = 0;
  if (rc != 0 || v == NULL)
    return rc;
  static const char *yes[] = {"true", "True", "TRUE", "yes", "on"};
  static const char *no[] = {"false", "False", "FALSE", "no", "off"};
  for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++) {
    if (strcmp(v, yes[i]) == 0) {
      *out = 1;
      return 0;
    }
    if (strcmp(v, no[i]) == 0)
      return 0;
  }
  return fail(c, THAW_ECONFIG, "%s: %s is not a boolean", where, key);
}

static int set_server(ctx_t *c, thaw_kube_config_t *cfg, const char *where,
                      const char *s) {
  size_t len = strlen(s);
  const char *host;
  if (strncasecmp(s, "https://", 8) == 0)
    host = s + 8;
  else if (strncasecmp(s, "http://", 7) == 0)
    host = s + 7;
  else
    return fail(c, THAW_ECONFIG,
                "%s: server must start with https:// or http://", where);
  for (const char *p = s; *p; p++)
    if ((unsigned char)*p <= 0x20 || *p == 0x7f)
      return fail(c, THAW_ECONFIG, "%s: server contains a space or control "
                  "character", where);
  while (len > (size_t)(host - s) && s[len - 1] == '/')
    len--;
  if (len == (size_t)(host - s) || *host == '/')
    return fail(c, THAW_ECONFIG, "%s: server has no host", where);
  return dup_to(c, &cfg->server, s, len);
}

/* ---- kubeconfig file ---- */

static int load_cluster(ctx_t *c, thaw_kube_config_t *cfg, const char *name) {
  char qb[QUOTE_MAX + 4], where[QUOTE_MAX + 32];
  yaml_node_t *cl;
  int rc = find_named(c, "clusters", "cluster", name, "cluster", &cl);
  if (rc != 0)
    return rc;
  snprintf(where, sizeof(where), "cluster \"%s\"", q(name, qb));
  const char *server, *ca, *ca_data;
  if ((rc = get_str(c, cl, "server", where, &server)) != 0 ||
      (rc = get_str(c, cl, "certificate-authority", where, &ca)) != 0 ||
      (rc = get_str(c, cl, "certificate-authority-data", where, &ca_data)) !=
          0 ||
      (rc = parse_bool(c, cl, "insecure-skip-tls-verify", where,
                       &cfg->insecure_skip_tls_verify)) != 0)
    return rc;
  if (server == NULL)
    return fail(c, THAW_ECONFIG, "%s has no server", where);
  if ((rc = set_server(c, cfg, where, server)) != 0)
    return rc;
  if (cfg->insecure_skip_tls_verify && (ca || ca_data))
    return fail(c, THAW_ECONFIG, "%s: certificate-authority together with "
                "insecure-skip-tls-verify is not allowed", where);
  if (ca_data)
    return pem_data(c, where, "certificate-authority-data", ca_data,
                    &cfg->ca_pem);
  if (ca)
    return file_ref(c, where, "certificate-authority", ca, &cfg->ca_file);
  return 0;
}

static int load_user(ctx_t *c, thaw_kube_config_t *cfg, const char *name) {
  char qb[QUOTE_MAX + 4], where[QUOTE_MAX + 32];
  yaml_node_t *u;
  int rc = find_named(c, "users", "user", name, "user", &u);
  if (rc != 0)
    return rc;
  snprintf(where, sizeof(where), "user \"%s\"", q(name, qb));
  if (map_get(c->doc, u, "exec"))
    return fail(c, THAW_ECONFIG,
                "%s: exec credential plugins are not supported", where);
  if (map_get(c->doc, u, "auth-provider"))
    return fail(c, THAW_ECONFIG,
                "%s: auth-provider plugins are not supported", where);
  if (map_get(c->doc, u, "username") || map_get(c->doc, u, "password"))
    return fail(c, THAW_ECONFIG,
                "%s: basic auth (username/password) is not supported", where);
  const char *token, *token_file, *cert, *cert_data, *key, *key_data;
  if ((rc = get_str(c, u, "token", where, &token)) != 0 ||
      (rc = get_str(c, u, "tokenFile", where, &token_file)) != 0 ||
      (rc = get_str(c, u, "client-certificate", where, &cert)) != 0 ||
      (rc = get_str(c, u, "client-certificate-data", where, &cert_data)) !=
          0 ||
      (rc = get_str(c, u, "client-key", where, &key)) != 0 ||
      (rc = get_str(c, u, "client-key-data", where, &key_data)) != 0)
    return rc;
  if ((cert || cert_data) != (key || key_data))
    return fail(c, THAW_ECONFIG, "%s: a client certificate needs a client "
                "key and a client key needs a certificate", where);
  if (cert_data)
    rc = pem_data(c, where, "client-certificate-data", cert_data,
                  &cfg->cert_pem);
  else if (cert)
    rc = file_ref(c, where, "client-certificate", cert, &cfg->cert_file);
  if (rc != 0)
    return rc;
  if (key_data)
    rc = pem_data(c, where, "client-key-data", key_data, &cfg->key_pem);
  else if (key)
    rc = file_ref(c, where, "client-key", key, &cfg->key_file);
  if (rc != 0)
    return rc;
  if (token)
    return dup_to(c, &cfg->token, token, strlen(token));
  if (token_file)
    return file_ref(c, where, "tokenFile", token_file, &cfg->token_file);
  return 0;
}

static int load_file(ctx_t *c, thaw_kube_config_t *cfg, const char *path) {
  char *text;
  size_t len;
  int rc = read_file(path, KUBECONFIG_MAX, &text, &len);
  if (rc == THAW_E2BIG)
    return fail(c, THAW_ECONFIG, "larger than %d bytes", KUBECONFIG_MAX);
  if (rc == THAW_ENOMEM)
    return oom(c);
  if (rc != 0)
    return fail(c, THAW_ECONFIG, "cannot read: %s", strerror(-rc));

  const char *slash = strrchr(path, '/');
  if (slash == path)
    memcpy(c->dir, "/", 2);
  else if (slash && (size_t)(slash - path) < sizeof(c->dir))
    snprintf(c->dir, sizeof(c->dir), "%.*s", (int)(slash - path), path);
  else if (slash)
    rc = fail(c, THAW_ECONFIG, "path too long");

  /* A 1 MiB "[[[[..." takes libyaml many minutes. Brackets are counted
   * even inside scalars: a real kubeconfig never nests 256 of them. */
  int depth = 0;
  for (size_t i = 0; i < len && rc == 0; i++) {
    if (text[i] == '[' || text[i] == '{') {
      if (++depth > FLOW_DEPTH_MAX)
        rc = fail(c, THAW_ECONFIG, "nested deeper than %d levels",
                  FLOW_DEPTH_MAX);
    } else if ((text[i] == ']' || text[i] == '}') && depth > 0) {
      depth--;
    }
  }

  yaml_parser_t parser;
  yaml_document_t doc;
  int have_doc = 0;
  if (rc != 0)
    goto out_text;
  if (!yaml_parser_initialize(&parser)) {
    rc = oom(c);
    goto out_text;
  }
  yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
  if (!yaml_parser_load(&parser, &doc)) {
    if (parser.error == YAML_MEMORY_ERROR)
      rc = oom(c);
    else
      rc = fail(c, THAW_ECONFIG, "not valid YAML: %s at line %zu",
                parser.problem ? parser.problem : "syntax error",
                parser.problem_mark.line + 1);
    goto out_parser;
  }
  have_doc = 1;
  c->doc = &doc;
  yaml_node_t *root = yaml_document_get_root_node(&doc);
  if (root == NULL) {
    rc = fail(c, THAW_ECONFIG, "empty file");
    goto out_parser;
  }
  if (root->type != YAML_MAPPING_NODE) {
    rc = fail(c, THAW_ECONFIG, "not a YAML mapping");
    goto out_parser;
  }

  char qb[QUOTE_MAX + 4], where[QUOTE_MAX + 32];
  const char *cur, *cluster, *user, *ns;
  if ((rc = get_str(c, root, "current-context", "top level", &cur)) != 0)
    goto out_parser;
  if (cur == NULL) {
    rc = fail(c, THAW_ECONFIG, "no current-context");
    goto out_parser;
  }
  yaml_node_t *ctx;
  if ((rc = find_named(c, "contexts", "context", cur, "context", &ctx)) != 0)
    goto out_parser;
  snprintf(where, sizeof(where), "context \"%s\"", q(cur, qb));
  if ((rc = get_str(c, ctx, "cluster", where, &cluster)) != 0 ||
      (rc = get_str(c, ctx, "user", where, &user)) != 0 ||
      (rc = get_str(c, ctx, "namespace", where, &ns)) != 0)
    goto out_parser;
  if (cluster == NULL) {
    rc = fail(c, THAW_ECONFIG, "%s has no cluster", where);
    goto out_parser;
  }
  if (ns && (rc = dup_to(c, &cfg->namespace, ns, strlen(ns))) != 0)
    goto out_parser;
  if ((rc = load_cluster(c, cfg, cluster)) != 0)
    goto out_parser;
  if (user && (rc = load_user(c, cfg, user)) != 0)
    goto out_parser;
  if (!cfg->token && !cfg->token_file && !cfg->cert_file && !cfg->cert_pem &&
      strncasecmp(cfg->server, "http://", 7) != 0 && !cfg->ca_file &&
      !cfg->ca_pem)
    rc = fail(c, THAW_ECONFIG, "%s: no credentials and no "
              "certificate-authority for an https server", where);

out_parser:
  if (have_doc)
    yaml_document_delete(&doc);
  yaml_parser_delete(&parser);
out_text:
  /* The file may hold tokens and keys. */
  OPENSSL_cleanse(text, len);
  free(text);
  return rc;
}

/* ---- in-cluster ---- */

static int load_in_cluster(ctx_t *c, thaw_kube_config_t *cfg) {
  const char *host = getenv("KUBERNETES_SERVICE_HOST");
  const char *port = getenv("KUBERNETES_SERVICE_PORT");
  if (host == NULL || host[0] == '\0' || port == NULL || port[0] == '\0')
    return fail(c, THAW_ECONFIG, "KUBERNETES_SERVICE_HOST and "
                "KUBERNETES_SERVICE_PORT must be set (not running in a pod?)");
  size_t hlen = strnlen(host, 256);
  if (hlen >= 256 || strpbrk(host, "/@?# \t\r\n") != NULL)
    return fail(c, THAW_ECONFIG, "KUBERNETES_SERVICE_HOST is not a host");
  char *end;
  errno = 0;
  long p = strtol(port, &end, 10);
  if (errno || *end != '\0' || port[0] < '0' || port[0] > '9' || p < 1 ||
      p > 65535)
    return fail(c, THAW_ECONFIG, "KUBERNETES_SERVICE_PORT is not a port");
  /* An IPv6 literal needs brackets in a URL. */
  int v6 = strchr(host, ':') != NULL && host[0] != '[';
  char url[300];
  snprintf(url, sizeof(url), "https://%s%s%s:%ld", v6 ? "[" : "", host,
           v6 ? "]" : "", p);
  int rc = dup_to(c, &cfg->server, url, strlen(url));
  if (rc != 0)
    return rc;

  const char *dir = getenv("THAW_SERVICEACCOUNT_DIR");
  if (dir == NULL || dir[0] == '\0')
    dir = SA_DIR;
  char path[PATH_MAX];
  static const char *names[] = {"token", "ca.crt"};
  char **dst[] = {&cfg->token_file, &cfg->ca_file};
  for (int i = 0; i < 2; i++) {
    int n = snprintf(path, sizeof(path), "%s/%s", dir, names[i]);
    if (n < 0 || (size_t)n >= sizeof(path))
      return fail(c, THAW_ECONFIG, "service account directory path too long");
    if (access(path, R_OK) != 0)
      return fail(c, THAW_ECONFIG, "%s: %s", path, strerror(errno));
    if ((rc = dup_to(c, dst[i], path, (size_t)n)) != 0)
      return rc;
  }

  snprintf(path, sizeof(path), "%s/namespace", dir);
  char *text;
  size_t len;
  rc = read_file(path, NAMESPACE_MAX, &text, &len);
  if (rc == -ENOENT)
    return 0;
  if (rc == THAW_ENOMEM)
    return oom(c);
  if (rc != 0)
    return fail(c, THAW_ECONFIG, "%s: %s", path,
                rc == THAW_E2BIG ? "too large" : strerror(-rc));
  char *s = text, *e = text + len;
  while (s < e && (*s == ' ' || *s == '\n' || *s == '\r' || *s == '\t'))
    s++;
  while (e > s && (e[-1] == ' ' || e[-1] == '\n' || e[-1] == '\r' ||
                   e[-1] == '\t'))
    e--;
  if (e > s)
    rc = dup_to(c, &cfg->namespace, s, (size_t)(e - s));
  free(text);
  return rc;
}

int thaw_kube_config_load(thaw_kube_config_t *cfg, const char *path,
                          char *err, size_t errlen) {
  char what[PATH_MAX + 16];
  ctx_t c = {.err = err, .errlen = errlen, .what = what};
  if (err && errlen)
    err[0] = '\0';
  if (cfg == NULL) {
    c.what = "kubeconfig";
    return fail(&c, THAW_EINVAL, "no config to fill");
  }
  memset(cfg, 0, sizeof(*cfg));
  if (path)
    snprintf(what, sizeof(what), "kubeconfig %s", path);
  else
    c.what = "in-cluster config";
  int rc = path ? load_file(&c, cfg, path) : load_in_cluster(&c, cfg);
  if (rc != 0) {
    if (cfg->token)
      OPENSSL_cleanse(cfg->token, strlen(cfg->token));
    if (cfg->key_pem)
      OPENSSL_cleanse(cfg->key_pem, strlen(cfg->key_pem));
    cfg_clear(cfg);
  }
  return rc;
}
