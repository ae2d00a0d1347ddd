/* registry.c - the OCI distribution client: per-request auth and redirects
 * (regcall), and the manifest operations. Blobs are in regblob.c. */
#include "registry.h"

#include <curl/curl.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "error.h"
#include "regcall.h"

static const char accept_hdr[] =
    "Accept: application/vnd.oci.image.manifest.v1+json, "
    "application/vnd.oci.image.index.v1+json, "
    "application/vnd.docker.distribution.manifest.v2+json, "
    "application/vnd.docker.distribution.manifest.list.v2+json";

static const char *const media_ok[] = {
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.distribution.manifest.list.v2+json", NULL};

int reg_sha256_hex(const void *p, size_t n, char out[72]) {
  unsigned char md[32];
  unsigned int len = 0;
  if (EVP_Digest(p, n, md, &len, EVP_sha256(), NULL) != 1)
    return THAW_EIO;
  memcpy(out, "sha256:", 7);
  for (int i = 0; i < 32; i++)
    snprintf(out + 7 + 2 * i, 3, "%02x", md[i]);
  return 0;
}

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

/* ---- client ---- */

int thaw_registry_new(thaw_http_t *http, const thaw_registry_opts_t *o,
                      thaw_registry_t **out) {
  thaw_registry_opts_t zero = {0};
  if (!o)
    o = &zero;
  thaw_registry_t *r = calloc(1, sizeof *r);
  if (!r)
    return THAW_ENOMEM;
  r->http = http;
  r->timeout_ms = o->timeout_ms ? o->timeout_ms : 60000;
  r->low_speed_secs = o->low_speed_secs ? o->low_speed_secs : 60;
  r->observe = o->observe;
  r->observe_data = o->observe_data;
  size_t n = 0;
  while (o->insecure && o->insecure[n])
    n++;
  r->insecure = calloc(n + 1, sizeof *r->insecure);
  if (!r->insecure)
    goto fail;
  for (size_t i = 0; i < n; i++)
    if (!(r->insecure[i] = strdup(o->insecure[i])))
      goto fail;
  if (o->ca_file && !(r->ca_file = strdup(o->ca_file)))
    goto fail;
  if (thaw_regauth_cache_new(0, o->clock, o->clock_data, &r->tokens))
    goto fail;
  *out = r;
  return 0;
fail:
  thaw_registry_free(r);
  return THAW_ENOMEM;
}

void thaw_registry_free(thaw_registry_t *r) {
  if (!r)
    return;
  r->closing = 1;
  while (r->ops) {
    /* Cancel one request at a time: its done may finish and free op. */
    regop_t *op = r->ops;
    regcall_t *c = op->a.req || op->a.tok_req   ? &op->a
                   : op->b.req || op->b.tok_req ? &op->b
                   : op->del.req || op->del.tok_req ? &op->del
                                                    : NULL;
    if (c)
      regcall_cancel(c);
    else
      regop_finish(op, THAW_ECANCELED);
  }
  for (char **p = r->insecure; p && *p; p++)
    free(*p);
  free(r->insecure);
  free(r->ca_file);
  thaw_regauth_cache_free(r->tokens);
  free(r);
}

/* ---- operations ---- */

regop_t *regop_new(thaw_registry_t *r, const thaw_registry_target_t *t,
                   thaw_registry_cb cb, void *data) {
  if (!r || !t || !t->host || !t->repo || !cb || r->closing)
    return NULL;
  regop_t *op = calloc(1, sizeof *op);
  if (!op)
    return NULL;
  op->r = r;
  op->cb = cb;
  op->data = data;
  if (t->creds) {
    op->creds = *t->creds;
    op->has_creds = 1;
  }
  op->next = r->ops;
  if (r->ops)
    r->ops->prev = op;
  r->ops = op;
  return op;
}

static void call_clear(regcall_t *c) {
  if (c->authz) {
    OPENSSL_cleanse(c->authz, strlen(c->authz));
    free(c->authz);
    c->authz = NULL;
  }
}

static void op_free(regop_t *op) {
  thaw_registry_t *r = op->r;
  if (op->prev)
    op->prev->next = op->next;
  else if (r->ops == op)
    r->ops = op->next;
  if (op->next)
    op->next->prev = op->prev;
  call_clear(&op->a);
  call_clear(&op->b);
  call_clear(&op->del);
  OPENSSL_cleanse(&op->creds, sizeof op->creds);
  OPENSSL_cleanse(&op->screds, sizeof op->screds);
  EVP_MD_CTX_free(op->md);
  free(op->ring);
  free(op->copy);
  free(op);
}

void regop_free_unstarted(regop_t *op) { op_free(op); }

void regop_finish(regop_t *op, int err) {
  if (op->finished)
    return;
  op->finished = 1;
  op->res.err = err;
  if (!op->msg[0])
    snprintf(op->msg, sizeof op->msg, "%s", err ? thaw_strerror(err) : "");
  op->res.message = op->msg;
  op->res.media_type = op->media;
  op->res.digest = op->digest;
  op->cb(&op->res, op->data);
  op_free(op);
}

/* Fills err/status/message from a non-success exchange; returns the err. */
int regop_fail_status(regop_t *op, const thaw_http_result_t *res,
                      const char *what) {
  int err = res->err ? res->err : regcall_status_err(res->status);
  if (res->status)
    op->res.status = res->status;
  if (!op->msg[0]) {
    if (res->err)
      snprintf(op->msg, sizeof op->msg, "%s: %s (%s)", what,
               thaw_strerror(res->err), res->message);
    else
      snprintf(op->msg, sizeof op->msg, "%s: HTTP %ld", what, res->status);
  }
  return err;
}

/* ---- one exchange: auth and redirects ---- */

static int is_insecure(thaw_registry_t *r, const char *host) {
  for (char **p = r->insecure; *p; p++)
    if (strcasecmp(*p, host) == 0)
      return 1;
  return 0;
}

int regcall_init(regcall_t *c, regop_t *op, const char *host,
                 const char *repo, const char *method, const char *path,
                 int push, const char *extra_scope) {
  call_clear(c); /* a call struct is reused from one step to the next */
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

int regcall_go(regcall_t *c) {
  thaw_registry_t *r = c->op->r;
  const char *user = c->creds ? c->creds->user : "";
  if (!c->authz) {
    const char *tok = thaw_regauth_cache_get(r->tokens, c->host, c->scope,
                                             user);
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
  call_clear(c); /* regcall_go takes the fresh token from the cache */
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
      call_clear(c);
      if ((rc = token_start(c, &ch)) == 0)
        return;
    } else if (!rc && ch.scheme == THAW_REGAUTH_BASIC && c->creds) {
      call_clear(c);
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

/* ---- manifests ---- */

static void manifest_done(regcall_t *c, const thaw_http_result_t *res) {
  regop_t *op = c->op;
  if (res->err || res->status < 200 || res->status >= 300) {
    regop_finish(op, regop_fail_status(op, res, "manifest"));
    return;
  }
  op->res.status = res->status;
  const char *dg = c->cur ? thaw_http_header(c->cur, "Docker-Content-Digest")
                          : NULL;
  const char *ct = c->cur ? thaw_http_header(c->cur, "Content-Type") : NULL;
  if (dg)
    snprintf(op->digest, sizeof op->digest, "%s", dg);
  if (strcmp(c->method, "GET") && strcmp(c->method, "HEAD")) {
    if (strncmp(op->media, "Content-Type: ", 14) == 0)
      memmove(op->media, op->media + 14, strlen(op->media + 14) + 1);
    regop_finish(op, 0); /* PUT, DELETE */
    return;
  }
  if (ct)
    snprintf(op->media, sizeof op->media, "%.*s", (int)strcspn(ct, "; "),
             ct);
  int known = 0;
  for (int i = 0; media_ok[i]; i++)
    known |= strcmp(op->media, media_ok[i]) == 0;
  if (!known) {
    snprintf(op->msg, sizeof op->msg, "unsupported manifest media type '%.160s'%s",
             op->media, strstr(op->media, "manifest.v1") ? " (schema 1)" : "");
    regop_finish(op, THAW_EPARSE);
    return;
  }
  if (strcmp(c->method, "HEAD") == 0) {
    const char *cl = thaw_http_header(c->cur, "Content-Length");
    op->res.size = cl ? strtoll(cl, NULL, 10) : -1;
    regop_finish(op, 0);
    return;
  }
  char sum[72];
  if (reg_sha256_hex(res->body, res->body_len, sum)) {
    regop_finish(op, THAW_EIO);
    return;
  }
  int by_digest = strncmp(op->ref, "sha256:", 7) == 0;
  if ((by_digest && strcmp(sum, op->ref) != 0) ||
      (dg && strncmp(dg, "sha256:", 7) == 0 && strcmp(dg, sum) != 0)) {
    snprintf(op->msg, sizeof op->msg, "manifest bytes hash to %s", sum);
    regop_finish(op, THAW_EDIGEST);
    return;
  }
  if (!dg)
    snprintf(op->digest, sizeof op->digest, "%s", sum);
  op->res.body = res->body;
  op->res.body_len = res->body_len;
  op->res.size = (long long)res->body_len;
  regop_finish(op, 0);
}

static int valid_ref(const char *ref) {
  size_t n = ref ? strlen(ref) : 0;
  if (n == 0 || n > 200)
    return 0;
  for (const char *p = ref; *p; p++)
    if (!(*p == ':' || *p == '.' || *p == '_' || *p == '-' ||
          (*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'z') ||
          (*p >= 'A' && *p <= 'Z')))
      return 0;
  return 1;
}

static int manifest_op(thaw_registry_t *r, const thaw_registry_target_t *t,
                       const char *method, const char *ref, int push,
                       const char *media, const void *bytes, size_t len,
                       thaw_registry_cb cb, void *data) {
  if (!valid_ref(ref) || (media && strlen(media) > 200) ||
      len > THAW_REGISTRY_MANIFEST_MAX)
    return len > THAW_REGISTRY_MANIFEST_MAX ? THAW_E2BIG : THAW_EINVAL;
  regop_t *op = regop_new(r, t, cb, data);
  if (!op)
    return r && !r->closing && t && cb ? THAW_ENOMEM : THAW_EINVAL;
  snprintf(op->ref, sizeof op->ref, "%s", ref);
  char path[THAW_REGAUTH_FIELD_MAX + 16];
  snprintf(path, sizeof path, "/manifests/%s", ref);
  regcall_t *c = &op->a;
  int rc = regcall_init(c, op, t->host, t->repo, method, path, push, NULL);
  if (!rc && media) {
    snprintf(op->media, sizeof op->media, "Content-Type: %s", media);
    c->hdr[c->nhdr++] = op->media;
    if (len && !(op->copy = malloc(len)))
      rc = THAW_ENOMEM;
    else if (len)
      memcpy(op->copy, bytes, len);
    c->body = op->copy ? op->copy : "";
    c->body_len = len;
  } else {
    c->hdr[c->nhdr++] = accept_hdr;
  }
  c->max_body = THAW_REGISTRY_MANIFEST_MAX;
  c->done = manifest_done;
  if (!rc)
    rc = regcall_go(c);
  if (rc) {
    regop_free_unstarted(op);
    return rc;
  }
  return 0;
}

int thaw_registry_manifest_get(thaw_registry_t *r,
                               const thaw_registry_target_t *t,
                               const char *ref, int head,
                               thaw_registry_cb cb, void *data) {
  return manifest_op(r, t, head ? "HEAD" : "GET", ref, 0, NULL, NULL, 0, cb,
                     data);
}

int thaw_registry_manifest_put(thaw_registry_t *r,
                               const thaw_registry_target_t *t,
                               const char *ref, const char *media_type,
                               const void *bytes, size_t len,
                               thaw_registry_cb cb, void *data) {
  if (!media_type || (!bytes && len))
    return THAW_EINVAL;
  return manifest_op(r, t, "PUT", ref, 1, media_type, bytes, len, cb, data);
}

int thaw_registry_manifest_delete(thaw_registry_t *r,
                                  const thaw_registry_target_t *t,
                                  const char *digest, thaw_registry_cb cb,
                                  void *data) {
  if (!digest || strncmp(digest, "sha", 3))
    return THAW_EINVAL;
  return manifest_op(r, t, "DELETE", digest, 1, NULL, NULL, 0, cb, data);
}
