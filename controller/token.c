/* token.c - the cache registry's token issuer (token.h). */
#include "token.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cjson/cJSON.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <strings.h>

#include "error.h"
#include "log.h"
#include "regauth.h"
#include "regtoken.h"

#define SCOPES_MAX 16 /* scopes in one request or one mint */
#define PARAM_MAX 4096 /* one query parameter: several scopes may share it */

struct thaw_token {
  thaw_regtoken_signer_t *signer;
  thaw_metric_t *requests; /* thaw_token_requests_total{code} */
  char cache_host[256];
  thaw_token_private_cb private_ok;
  void *private_data;
};

#define BASIC_MAX 256 /* decoded "namespace:password" */

typedef struct {
  char type[THAW_REGTOKEN_TYPE_MAX], name[THAW_REGTOKEN_NAME_MAX];
  unsigned actions;
} scope_t;

int thaw_token_new(const char *key_file, const char *cert_file,
                   thaw_metrics_t *metrics, thaw_token_t **out, char *err,
                   size_t errlen) {
  thaw_token_t *t = calloc(1, sizeof *t);
  if (t == NULL)
    return thaw_errf(err, errlen, THAW_ENOMEM, "out of memory");
  int rc = thaw_regtoken_signer_load(key_file, cert_file, &t->signer, err,
                                     errlen);
  if (rc != 0) {
    free(t);
    return rc;
  }
  static const char *const labels[] = {"code"};
  if (metrics)
    t->requests = thaw_metrics_counter(
        metrics, "thaw_token_requests_total",
        "Requests to the cache registry's token endpoint, by HTTP status.",
        1, labels);
  *out = t;
  return 0;
}

void thaw_token_free(thaw_token_t *t) {
  if (t == NULL)
    return;
  thaw_regtoken_signer_free(t->signer);
  free(t);
}

int thaw_token_set_cache_host(thaw_token_t *t, const char *host) {
  int n = snprintf(t->cache_host, sizeof t->cache_host, "%s", host);
  return n < 0 || (size_t)n >= sizeof t->cache_host ? THAW_E2BIG : 0;
}

unsigned thaw_token_grant(thaw_token_identity_t who, int private_ok,
                          const char *type, const char *name,
                          unsigned requested) {
  int repo = strcmp(type, "repository") == 0;
  if (who == THAW_TOKEN_CONTROLLER)
    return repo ? THAW_REGTOKEN_PULL | THAW_REGTOKEN_PUSH |
                      THAW_REGTOKEN_DELETE
                : strcmp(type, "registry") == 0 ? THAW_REGTOKEN_ALL : 0;
  /* everyone else only reads; private/ only a namespace that may have it */
  if (!repo)
    return 0;
  if (strncmp(name, THAW_TOKEN_PRIVATE_PREFIX,
              strlen(THAW_TOKEN_PRIVATE_PREFIX)) == 0 &&
      !(who == THAW_TOKEN_NAMESPACE && private_ok))
    return 0;
  return requested & THAW_REGTOKEN_PULL;
}

void thaw_token_set_private_check(thaw_token_t *t, thaw_token_private_cb cb,
                                  void *data) {
  t->private_ok = cb;
  t->private_data = data;
}

/* A DNS label (RFC 1123), as namespace names are. */
static int ns_valid(const char *ns) {
  size_t n = strlen(ns);
  if (n == 0 || n > THAW_TOKEN_NAMESPACE_MAX || ns[0] == '-' ||
      ns[n - 1] == '-')
    return 0;
  return strspn(ns, "abcdefghijklmnopqrstuvwxyz0123456789-") == n;
}

int thaw_token_pull_password(const thaw_token_t *t, const char *ns,
                             char out[THAW_TOKEN_PASSWORD_LEN + 1]) {
  static const char b64[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  char msg[32 + THAW_TOKEN_NAMESPACE_MAX];
  uint8_t mac[33] = {0}; /* a zero byte past the end: 11 whole groups */
  if (!ns_valid(ns))
    return THAW_EINVAL;
  int n = snprintf(msg, sizeof msg, "thaw-pull v1 %s", ns);
  if (thaw_regtoken_signer_mac(t->signer, msg, (size_t)n, mac) != 0)
    return THAW_ENOMEM;
  size_t o = 0;
  for (size_t i = 0; i < 33; i += 3) {
    uint32_t v = (uint32_t)mac[i] << 16 | (uint32_t)mac[i + 1] << 8 | mac[i + 2];
    for (int k = 3; k >= 0 && o < THAW_TOKEN_PASSWORD_LEN; k--)
      out[o++] = b64[(v >> (6 * k)) & 63];
  }
  out[o] = '\0';
  OPENSSL_cleanse(mac, sizeof mac);
  return 0;
}

/* Basic credentials -> the namespace they are thaw-pull's of, or 0. */
static int basic_namespace(const thaw_token_t *t, const char *authz,
                           char ns[THAW_TOKEN_NAMESPACE_MAX + 1]) {
  if (strncasecmp(authz, "Basic ", 6) != 0)
    return 0;
  const char *b = authz + 6;
  size_t bl = strlen(b);
  unsigned char dec[BASIC_MAX + 4];
  char want[THAW_TOKEN_PASSWORD_LEN + 1];
  if (bl == 0 || bl % 4 != 0 || bl / 4 * 3 > BASIC_MAX)
    return 0;
  int n = EVP_DecodeBlock(dec, (const unsigned char *)b, (int)bl);
  if (n <= 0)
    return 0;
  n -= (b[bl - 1] == '=') + (bl > 1 && b[bl - 2] == '=');
  dec[n] = '\0';
  char *colon = memchr(dec, ':', (size_t)n);
  int ok = 0;
  if (colon != NULL && memchr(dec, '\0', (size_t)n) == NULL) {
    *colon = '\0';
    const char *user = (const char *)dec, *pass = colon + 1;
    ok = strlen(pass) == THAW_TOKEN_PASSWORD_LEN &&
         thaw_token_pull_password(t, user, want) == 0 &&
         CRYPTO_memcmp(pass, want, THAW_TOKEN_PASSWORD_LEN) == 0;
    if (ok) /* a valid namespace name: at most 63 bytes */
      memcpy(ns, user, strlen(user) + 1);
  }
  OPENSSL_cleanse(dec, sizeof dec);
  OPENSSL_cleanse(want, sizeof want);
  return ok;
}

/* Signs a token granting `who` what it may have of scopes[0..n); entries
 * granted nothing are left out. */
static int sign(thaw_token_t *t, thaw_token_identity_t who, const char *sub,
                const scope_t *scopes, size_t n, char *tok, size_t cap) {
  thaw_regtoken_access_t access[SCOPES_MAX];
  size_t k = 0;
  int private_ok = who == THAW_TOKEN_NAMESPACE && t->private_ok &&
                   t->private_ok(sub, t->private_data) == 1;
  for (size_t i = 0; i < n && k < SCOPES_MAX; i++) {
    unsigned a = thaw_token_grant(who, private_ok, scopes[i].type,
                                  scopes[i].name, scopes[i].actions);
    if (a != 0)
      access[k++] = (thaw_regtoken_access_t){scopes[i].type, scopes[i].name,
                                             a};
  }
  thaw_regtoken_claims_t c = {.issuer = THAW_TOKEN_ISSUER,
                              .subject = sub,
                              .audience = THAW_TOKEN_SERVICE,
                              .now = (int64_t)time(NULL),
                              .ttl = THAW_TOKEN_TTL_S,
                              .access = access,
                              .naccess = k};
  return thaw_regtoken_sign(t->signer, &c, tok, cap);
}

int thaw_token_mint_self(const char *host, const char *scope, char *tok,
                         size_t cap, long *expires_in, void *data) {
  thaw_token_t *t = data;
  scope_t s[SCOPES_MAX];
  size_t n = 0;
  if (t == NULL || strcmp(host, t->cache_host) != 0)
    return THAW_ENOENT;
  char buf[THAW_REGAUTH_HEADER_MAX];
  int bn = snprintf(buf, sizeof buf, "%s", scope);
  if (bn < 0 || (size_t)bn >= sizeof buf)
    return THAW_E2BIG;
  for (char *p = buf, *e; p && *p && n < SCOPES_MAX; p = e) {
    e = strchr(p, ' ');
    if (e)
      *e++ = '\0';
    if (thaw_regtoken_parse_scope(p, s[n].type, sizeof s[n].type, s[n].name,
                                  sizeof s[n].name, &s[n].actions) == 0)
      n++;
  }
  int rc = sign(t, THAW_TOKEN_CONTROLLER, THAW_TOKEN_ISSUER, s, n, tok, cap);
  if (rc == 0)
    *expires_in = THAW_TOKEN_TTL_S;
  return rc;
}

/* --- the endpoint ------------------------------------------------------ */

static int text(thaw_httpd_reply_t *reply, int status, const char *msg) {
  thaw_httpd_reply_text(reply, status, msg);
  return status;
}

/* {token, access_token, expires_in, issued_at} */
static int reply_token(thaw_httpd_reply_t *reply, const char *tok) {
  char issued[32];
  time_t now = time(NULL);
  struct tm tm;
  gmtime_r(&now, &tm);
  strftime(issued, sizeof issued, "%Y-%m-%dT%H:%M:%SZ", &tm);
  cJSON *o = cJSON_CreateObject();
  if (o == NULL || !cJSON_AddStringToObject(o, "token", tok) ||
      !cJSON_AddStringToObject(o, "access_token", tok) ||
      !cJSON_AddNumberToObject(o, "expires_in", THAW_TOKEN_TTL_S) ||
      !cJSON_AddStringToObject(o, "issued_at", issued)) {
    cJSON_Delete(o);
    return THAW_ENOMEM;
  }
  char *body = cJSON_PrintUnformatted(o);
  cJSON_Delete(o);
  if (body == NULL)
    return THAW_ENOMEM;
  reply->status = 200;
  reply->content_type = "application/json";
  reply->body = body;
  reply->len = strlen(body);
  return 0;
}

/* Fills the reply; returns its status. */
static int handle(thaw_token_t *t, const thaw_httpd_request_t *req,
                  thaw_httpd_reply_t *reply) {
  if (strcmp(req->path, "/token") != 0)
    return text(reply, 404, "not found\n");
  if (strcmp(req->method, "POST") == 0 || req->has_body) {
    reply->allow = "GET, HEAD";
    return text(reply, 405, "use GET\n");
  }
  /* credentials that are not a namespace's never fall back to anonymous */
  char ns[THAW_TOKEN_NAMESPACE_MAX + 1] = "";
  if (req->authorization != NULL && !basic_namespace(t, req->authorization, ns))
    return text(reply, 401, "unknown credentials\n");
  scope_t s[SCOPES_MAX];
  size_t n = 0, pos = 0;
  char name[PARAM_MAX], value[PARAM_MAX];
  int rc, service = 0;
  while ((rc = thaw_httpd_query_next(req->query, &pos, name, sizeof name,
                                     value, sizeof value)) == 1) {
    if (strcmp(name, "service") == 0) {
      if (strcmp(value, THAW_TOKEN_SERVICE) != 0)
        return text(reply, 400, "unknown service\n");
      service = 1;
    } else if (strcmp(name, "scope") == 0) {
      /* one parameter may hold several scopes, space-separated */
      for (char *p = value, *e; p && *p; p = e) {
        e = strchr(p, ' ');
        if (e)
          *e++ = '\0';
        if (*p == '\0')
          continue;
        if (n == SCOPES_MAX ||
            thaw_regtoken_parse_scope(p, s[n].type, sizeof s[n].type,
                                      s[n].name, sizeof s[n].name,
                                      &s[n].actions) != 0)
          return text(reply, 400, "bad scope\n");
        n++;
      }
    }
  }
  if (rc != 0)
    return text(reply, 400, "bad query\n");
  if (!service)
    return text(reply, 400, "service is required\n");
  char *tok = malloc(THAW_REGAUTH_TOKEN_MAX);
  if (tok == NULL)
    return text(reply, 500, "out of memory\n");
  rc = sign(t, ns[0] ? THAW_TOKEN_NAMESPACE : THAW_TOKEN_ANONYMOUS, ns, s, n,
            tok, THAW_REGAUTH_TOKEN_MAX);
  if (rc == 0)
    rc = reply_token(reply, tok);
  OPENSSL_cleanse(tok, THAW_REGAUTH_TOKEN_MAX);
  free(tok);
  if (rc != 0) {
    thaw_error("token endpoint: cannot sign", "error", thaw_strerror(rc));
    return text(reply, 500, "cannot sign\n");
  }
  return 200;
}

void thaw_token_serve(thaw_token_t *t, const thaw_httpd_request_t *req,
                      thaw_httpd_reply_t *reply) {
  char code[8];
  snprintf(code, sizeof code, "%d", handle(t, req, reply));
  const char *v[] = {code};
  thaw_metric_inc(t->requests, v);
}
