/* regcall.c - one registry HTTP exchange: anonymous first, then the
 * Bearer token flow or Basic on 401; redirects followed here so that
 * Authorization goes to the registry's own origin only; Retry-After. */
#include <curl/curl.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "error.h"
#include "regcall.h"

int regcall_status_err(long status) {
  switch (status) {
  case 400: return THAW_EBADREQUEST;
  case 401:
  case 403: return THAW_EFORBIDDEN;
  case 404: return THAW_ENOTFOUND;
  case 409: return THAW_ECONFLICT;
  case 429: return THAW_ETOOMANY;
  default: return status >= 500 ? THAW_ESERVER : THAW_EHTTP;
  }
}

void regcall_clear(regcall_t *c) {
  if (c->authz) {
    OPENSSL_cleanse(c->authz, strlen(c->authz));
    free(c->authz);
    c->authz = NULL;
  }
}


static int is_insecure(thaw_registry_t *r, const char *host) {
  for (char **p = r->insecure; *p; p++)
    if (strcasecmp(*p, host) == 0)
      return 1;
  return 0;
}

int regcall_init(regcall_t *c, regop_t *op, const char *host,
                 const char *repo, const char *method, const char *path,
                 int push, const char *extra_scope) {
  regcall_clear(c); /* a call struct is reused from one step to the next */
  memset(c, 0, sizeof *c);
  c->op = op;
  c->method = method;
  c->timeout_ms = op->r->timeout_ms;
  c->creds = op->has_creds ? &op->creds : NULL;
  const char *api = strcmp(host, "docker.io") == 0 ? "registry-1.docker.io"
                                                   : host;
  if (strlen(api) >= 256 || strlen(repo) > 255 || strchr(api, '/'))
    return THAW_EINVAL;
  snprintf(c->host, sizeof c->host, "%s", api);
  snprintf(c->origin, sizeof c->origin, "%s://%s",
           is_insecure(op->r, host) || is_insecure(op->r, api) ? "http"
                                                                : "https",
           api);
  int n = snprintf(c->url, sizeof c->url, "%s/v2/%s%s", c->origin, repo,
                   path);
  if (n < 0 || (size_t)n >= sizeof c->url)
    return THAW_E2BIG;
  n = snprintf(c->scope, sizeof c->scope, "repository:%s:%s%s%s", repo,
               push ? "pull,push" : "pull", extra_scope ? " " : "",
               extra_scope ? extra_scope : "");
  if (n < 0 || (size_t)n >= sizeof c->scope)
    return THAW_E2BIG;
  return 0;
}

static int same_origin(const regcall_t *c) {
  size_t n = strlen(c->origin);
  return strncmp(c->url, c->origin, n) == 0 &&
         (c->url[n] == '/' || c->url[n] == '\0' || c->url[n] == '?');
}

static void observe(regcall_t *c, const char *url, long status) {
  thaw_registry_t *r = c->op->r;
  if (!r->observe)
    return;
  const char *p = strstr(url, "://");
  p = p ? p + 3 : url;
  char host[256];
  size_t n = strcspn(p, "/?");
  snprintf(host, sizeof host, "%.*s", (int)(n < 255 ? n : 255), p);
  r->observe(host, status, r->observe_data);
}

static int call_response(thaw_http_req_t *req, long status, void *data) {
  regcall_t *c = data;
  (void)req;
  c->passing = status >= 200 && status < 300;
  if (c->passing && c->on_ok)
    return c->on_ok(c);
  return 0;
}

static int call_data(thaw_http_req_t *req, const char *buf, size_t len,
                     void *data) {
  regcall_t *c = data;
  if (!c->passing)
    return 0; /* error or redirect bodies are dropped */
  return c->on_data(req, buf, len, c->op);
}

static void call_done(thaw_http_req_t *req, const thaw_http_result_t *res,
                      void *data);

/* A token the owner signs itself (registry.h, thaw_registry_mint_cb),
 * cached like a fetched one; NULL when it makes none for this host. */
static const char *mint(regcall_t *c, const char *user) {
  thaw_registry_t *r = c->op->r;
  char tok[THAW_REGAUTH_TOKEN_MAX];
  long ttl = 0;
  if (r->mint(c->host, c->scope, tok, sizeof tok, &ttl, r->mint_data) != 0)
    return NULL;
  int rc = thaw_regauth_cache_put(r->tokens, c->host, c->scope, user, tok,
                                  ttl);
  OPENSSL_cleanse(tok, sizeof tok);
  return rc ? NULL : thaw_regauth_cache_get(r->tokens, c->host, c->scope,
                                            user);
}

int regcall_go(regcall_t *c) {
  thaw_registry_t *r = c->op->r;
  const char *user = c->creds ? c->creds->user : "";
  if (!c->authz) {
    const char *tok = thaw_regauth_cache_get(r->tokens, c->host, c->scope,
                                             user);
    if (!tok && r->mint)
      tok = mint(c, user);
    if (tok) {
      size_t n = strlen(tok) + 32;
      if (!(c->authz = malloc(n)))
        return THAW_ENOMEM;
      snprintf(c->authz, n, "Authorization: Bearer %s", tok);
    } else if (c->creds && strcmp(c->op->basic_host, c->host) == 0) {
      /* Basic once accepted: send it up front (streamed bodies can't be
       * resent after a 401). */
      if (!(c->authz = malloc(THAW_REGAUTH_HEADER_MAX)))
        return THAW_ENOMEM;
      int rc = thaw_regauth_basic_header(c->creds, c->authz,
                                         THAW_REGAUTH_HEADER_MAX);
      if (rc)
        return rc;
    }
  }
  const char *h[8];
  int nh = 0;
  for (int i = 0; i < c->nhdr; i++)
    h[nh++] = c->hdr[i];
  /* Authorization only to the origin it belongs to. */
  if (c->authz && same_origin(c))
    h[nh++] = c->authz;
  h[nh] = NULL;
  thaw_http_opts_t o = {
      .method = c->method,
      .url = c->url,
      .headers = h,
      .body = c->body,
      .body_len = c->body_len,
      .read_cb = c->read_cb,
      .read_len = c->read_len,
      .ca_file = r->ca_file,
      .timeout_ms = c->on_data || c->read_cb ? 0 : c->timeout_ms,
      .low_speed_bytes = 1024,
      .low_speed_secs = r->low_speed_secs,
      .max_redirects = 0, /* followed in call_done, see registry.h */
      .max_body = c->on_data ? 0 : (c->max_body ? c->max_body
                                                : THAW_REGISTRY_ERRBODY_MAX),
      .on_response = call_response,
      .on_data = c->on_data ? call_data : NULL,
      .on_done = call_done,
      .data = c,
  };
  return thaw_http_start(r->http, &o, &c->req);
}

void regcall_cancel(regcall_t *c) {
  if (c->tok_req)
    thaw_http_cancel(c->tok_req);
  if (c->req)
    thaw_http_cancel(c->req);
}

/* Ends the exchange with an error that arose here (not from HTTP). */
static void call_fail(regcall_t *c, int err, const char *why) {
  if (!c->op->msg[0])
    snprintf(c->op->msg, sizeof c->op->msg, "%s", why);
  thaw_http_result_t res = {.err = err, .message = why};
  c->done(c, &res);
}

static int url_escape(char *out, size_t cap, const char *s) {
  size_t o = 0;
  for (; *s; s++) {
    unsigned char ch = (unsigned char)*s;
    int plain = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
                (ch >= '0' && ch <= '9') || strchr("-._~", ch);
    if (o + 4 >= cap)
      return THAW_E2BIG;
    if (plain)
      out[o++] = (char)ch;
    else
      o += (size_t)snprintf(out + o, 4, "%%%02X", ch);
  }
  out[o] = '\0';
  return 0;
}

static void token_done(thaw_http_req_t *req, const thaw_http_result_t *res,
                       void *data) {
  regcall_t *c = data;
  (void)req;
  c->tok_req = NULL;
  if (res->err != THAW_ECANCELED)
    observe(c, c->url, res->status); /* counted under the registry host */
  if (res->err || res->status != 200) {
    thaw_http_result_t r2 = *res;
    if (!r2.err && (res->status == 401 || res->status == 403) && !c->creds)
      c->op->res.anonymous_refused = 1;
    if (!c->op->msg[0])
      snprintf(c->op->msg, sizeof c->op->msg, "token request: %s %ld",
               res->err ? thaw_strerror(res->err) : "HTTP", res->status);
    r2.status = r2.err ? 0 : 401;
    c->done(c, &r2);
    return;
  }
  char *tok = malloc(THAW_REGAUTH_TOKEN_MAX);
  long ttl = 0;
  int rc = tok ? thaw_regauth_parse_token(res->body, res->body_len, tok,
                                          THAW_REGAUTH_TOKEN_MAX, &ttl)
               : THAW_ENOMEM;
  const char *user = c->creds ? c->creds->user : "";
  if (!rc)
    rc = thaw_regauth_cache_put(c->op->r->tokens, c->host, c->scope, user,
                                tok, ttl);
  if (tok) {
    OPENSSL_cleanse(tok, THAW_REGAUTH_TOKEN_MAX);
    free(tok);
  }
  if (rc) {
    call_fail(c, rc, "bad token response");
    return;
  }
  regcall_clear(c); /* regcall_go takes the fresh token from the cache */
  if ((rc = regcall_go(c)))
    call_fail(c, rc, "cannot restart request");
}

/* Starts GET realm?service=&scope=... with Basic credentials if any. */
static int token_start(regcall_t *c, const thaw_regauth_challenge_t *ch) {
  char url[REG_URL_MAX], esc[REG_SCOPE_MAX * 3];
  int n = snprintf(url, sizeof url, "%s", ch->realm);
  if (strncmp(url, "http://", 7) && strncmp(url, "https://", 8))
    return THAW_EPARSE;
  char sep = strchr(url, '?') ? '&' : '?';
  if (ch->service[0]) {
    if (url_escape(esc, sizeof esc, ch->service))
      return THAW_E2BIG;
    n += snprintf(url + n, sizeof url - (size_t)n, "%cservice=%s", sep, esc);
    sep = '&';
  }
  char scopes[REG_SCOPE_MAX];
  snprintf(scopes, sizeof scopes, "%s", c->scope);
  for (char *s = scopes, *e; s && *s; s = e) {
    e = strchr(s, ' ');
    if (e)
      *e++ = '\0';
    if (url_escape(esc, sizeof esc, s))
      return THAW_E2BIG;
    n += snprintf(url + n, sizeof url - (size_t)n, "%cscope=%s", sep, esc);
    sep = '&';
  }
  if ((size_t)n >= sizeof url)
    return THAW_E2BIG;
  char *basic = NULL;
  const char *h[2] = {NULL, NULL};
  if (c->creds) {
    if (!(basic = malloc(THAW_REGAUTH_HEADER_MAX)))
      return THAW_ENOMEM;
    if (thaw_regauth_basic_header(c->creds, basic,
                                  THAW_REGAUTH_HEADER_MAX)) {
      free(basic);
      return THAW_E2BIG;
    }
    h[0] = basic;
  }
  thaw_http_opts_t o = {.url = url, .headers = h, .ca_file = c->op->r->ca_file,
                        .timeout_ms = c->timeout_ms, .max_body = 64 << 10,
                        .on_done = token_done, .data = c};
  int rc = thaw_http_start(c->op->r->http, &o, &c->tok_req);
  if (basic) {
    OPENSSL_cleanse(basic, strlen(basic));
    free(basic);
  }
  return rc;
}

/* Resolves a Location against the current URL into c->url. */
static int follow(regcall_t *c, const char *loc) {
  char base[REG_URL_MAX];
  snprintf(base, sizeof base, "%s", c->url);
  int n;
  if (strncmp(loc, "http://", 7) == 0 || strncmp(loc, "https://", 8) == 0) {
    n = snprintf(c->url, sizeof c->url, "%s", loc);
  } else {
    const char *p = strstr(base, "://");
    p = p ? p + 3 : base;
    size_t olen = (size_t)(p - base) + strcspn(p, "/?");
    n = snprintf(c->url, sizeof c->url, "%.*s%s%s", (int)olen, base,
                 loc[0] == '/' ? "" : "/", loc);
  }
  return n < 0 || (size_t)n >= sizeof c->url ? THAW_E2BIG : 0;
}

static void call_done(thaw_http_req_t *req, const thaw_http_result_t *res,
                      void *data) {
  regcall_t *c = data;
  c->req = NULL;
  if (res->err != THAW_ECANCELED || res->status)
    observe(c, c->url, res->err ? 0 : res->status);
  if (!res->err && res->status == 401 && !c->auth_tried &&
      !c->op->r->closing && same_origin(c)) {
    c->auth_tried = 1;
    thaw_regauth_challenge_t ch;
    const char *wa = thaw_http_header(req, "WWW-Authenticate");
    int rc = thaw_regauth_parse_challenge(wa, &ch);
    if (c->read_cb) /* a streamed body cannot be sent twice */
      rc = THAW_EFORBIDDEN;
    if (!rc && ch.scheme == THAW_REGAUTH_BEARER) {
      regcall_clear(c);
      if ((rc = token_start(c, &ch)) == 0)
        return;
    } else if (!rc && ch.scheme == THAW_REGAUTH_BASIC && c->creds) {
      regcall_clear(c);
      snprintf(c->op->basic_host, sizeof c->op->basic_host, "%s", c->host);
      if (!(c->authz = malloc(THAW_REGAUTH_HEADER_MAX)))
        rc = THAW_ENOMEM;
      else if (!(rc = thaw_regauth_basic_header(c->creds, c->authz,
                                               THAW_REGAUTH_HEADER_MAX)))
        rc = regcall_go(c);
      if (!rc)
        return;
    }
    if (!c->op->msg[0])
      snprintf(c->op->msg, sizeof c->op->msg, "%s",
               c->creds ? "registry refused the credentials"
                                : "registry refuses anonymous access");
  }
  if (!res->err && res->status >= 300 && res->status < 400 &&
      res->status != 304 && !c->read_cb && !c->op->r->closing) {
    const char *loc = thaw_http_header(req, "Location");
    if (loc && c->redirects < THAW_REGISTRY_REDIRECTS) {
      c->redirects++;
      int rc = follow(c, loc);
      if (!rc)
        rc = regcall_go(c);
      if (rc)
        call_fail(c, rc, "cannot follow redirect");
      return;
    }
  }
  if (res->status == 429) {
    const char *ra = thaw_http_header(req, "Retry-After");
    if (ra) {
      char *end;
      long v = strtol(ra, &end, 10);
      if (end != ra && *end == '\0' && v >= 0) {
        c->op->res.retry_after = v;
      } else {
        time_t when = curl_getdate(ra, NULL);
        time_t now = time(NULL);
        c->op->res.retry_after = when > now ? (long)(when - now) : 0;
      }
    }
  }
  /* Private: refused even with an anonymous token (a public Docker Hub
   * image also answers the bare request with 401). */
  if (!res->err && (res->status == 401 || res->status == 403) && !c->creds)
    c->op->res.anonymous_refused = 1;
  c->cur = req;
  c->done(c, res);
}

