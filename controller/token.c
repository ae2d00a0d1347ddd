/* token.c - the cache registry's token issuer (token.h). */
#include "token.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cjson/cJSON.h>
#include <openssl/crypto.h>

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
};

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

unsigned thaw_token_grant(thaw_token_identity_t who, const char *type,
                          const char *name, unsigned requested) {
  int repo = strcmp(type, "repository") == 0;
  if (who == THAW_TOKEN_CONTROLLER)
    return repo ? THAW_REGTOKEN_PULL | THAW_REGTOKEN_PUSH |
                      THAW_REGTOKEN_DELETE
                : strcmp(type, "registry") == 0 ? THAW_REGTOKEN_ALL : 0;
  /* anonymous: the public path only, and only to read */
  if (!repo || strncmp(name, THAW_TOKEN_PRIVATE_PREFIX,
                       strlen(THAW_TOKEN_PRIVATE_PREFIX)) == 0)
    return 0;
  return requested & THAW_REGTOKEN_PULL;
}

/* Signs a token granting `who` what it may have of scopes[0..n); entries
 * granted nothing are left out. */
static int sign(thaw_token_t *t, thaw_token_identity_t who, const char *sub,
                const scope_t *scopes, size_t n, char *tok, size_t cap) {
  thaw_regtoken_access_t access[SCOPES_MAX];
  size_t k = 0;
  for (size_t i = 0; i < n && k < SCOPES_MAX; i++) {
    unsigned a = thaw_token_grant(who, scopes[i].type, scopes[i].name,
                                  scopes[i].actions);
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
  if (req->authorization != NULL) /* no accounts yet: never anonymous */
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
  rc = sign(t, THAW_TOKEN_ANONYMOUS, "", s, n, tok, THAW_REGAUTH_TOKEN_MAX);
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
