/* regauth.c - registry authentication, the pure parts (see regauth.h). */
#include "regauth.h"

#include <cjson/cJSON.h>
#include <ctype.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "error.h"

/* Copies n bytes plus NUL into buf; THAW_E2BIG when it does not fit. */
static int copy_n(char *buf, size_t cap, const char *s, size_t n) {
  if (n >= cap)
    return THAW_E2BIG;
  memcpy(buf, s, n);
  buf[n] = '\0';
  return 0;
}

int thaw_regauth_parse_challenge(const char *hdr,
                                 thaw_regauth_challenge_t *out) {
  memset(out, 0, sizeof *out);
  if (!hdr)
    return THAW_EPARSE;
  if (strlen(hdr) > THAW_REGAUTH_HEADER_MAX)
    return THAW_E2BIG;
  const char *p = hdr;
  while (*p == ' ' || *p == '\t')
    p++;
  if (strncasecmp(p, "Bearer", 6) == 0 && (p[6] == ' ' || p[6] == '\0')) {
    out->scheme = THAW_REGAUTH_BEARER;
    p += 6;
  } else if (strncasecmp(p, "Basic", 5) == 0 && (p[5] == ' ' || !p[5])) {
    out->scheme = THAW_REGAUTH_BASIC;
    p += 5;
  } else {
    return THAW_EPARSE;
  }
  for (;;) {
    while (*p == ' ' || *p == '\t' || *p == ',')
      p++;
    if (!*p)
      break;
    const char *name = p;
    while (*p && *p != '=' && *p != ' ' && *p != ',')
      p++;
    size_t nlen = (size_t)(p - name);
    while (*p == ' ')
      p++;
    if (*p != '=' || nlen == 0)
      return THAW_EPARSE;
    p++;
    while (*p == ' ')
      p++;
    char val[THAW_REGAUTH_REALM_MAX];
    size_t vlen = 0;
    if (*p == '"') {
      p++;
      while (*p && *p != '"') {
        if (*p == '\\' && p[1])
          p++;
        if (vlen + 1 >= sizeof val)
          return THAW_E2BIG;
        val[vlen++] = *p++;
      }
      if (*p != '"')
        return THAW_EPARSE; /* unterminated quote */
      p++;
    } else {
      while (*p && *p != ',' && *p != ' ') {
        if (vlen + 1 >= sizeof val)
          return THAW_E2BIG;
        val[vlen++] = *p++;
      }
    }
    val[vlen] = '\0';
    int rc = 0;
    if (nlen == 5 && strncasecmp(name, "realm", 5) == 0)
      rc = copy_n(out->realm, sizeof out->realm, val, vlen);
    else if (nlen == 7 && strncasecmp(name, "service", 7) == 0)
      rc = copy_n(out->service, sizeof out->service, val, vlen);
    else if (nlen == 5 && strncasecmp(name, "scope", 5) == 0)
      rc = copy_n(out->scope, sizeof out->scope, val, vlen);
    if (rc)
      return rc;
  }
  if (out->scheme == THAW_REGAUTH_BEARER && !out->realm[0])
    return THAW_EPARSE;
  return 0;
}

int thaw_regauth_host_key(const char *host, char *buf, size_t cap) {
  if (cap)
    buf[0] = '\0';
  if (!host)
    return THAW_EINVAL;
  const char *p = strstr(host, "://");
  p = p ? p + 3 : host;
  size_t n = strcspn(p, "/");
  if (n == 0)
    return THAW_EINVAL;
  if (n >= cap)
    return THAW_E2BIG;
  for (size_t i = 0; i < n; i++)
    buf[i] = (char)tolower((unsigned char)p[i]);
  buf[n] = '\0';
  if (strcmp(buf, "index.docker.io") == 0 ||
      strcmp(buf, "registry-1.docker.io") == 0)
    return copy_n(buf, cap, "docker.io", 9);
  return 0;
}

/* Base64 of user:pass decoded into c; THAW_EPARSE when not base64 or no ':'. */
static int decode_auth(const char *b64, thaw_regauth_creds_t *c) {
  size_t n = strlen(b64);
  if (n > 4 * ((THAW_REGAUTH_USER_MAX + THAW_REGAUTH_PASS_MAX) / 3))
    return THAW_E2BIG;
  if (n == 0 || n % 4)
    return THAW_EPARSE;
  unsigned char *raw = malloc(n);
  if (!raw)
    return THAW_ENOMEM;
  int len = EVP_DecodeBlock(raw, (const unsigned char *)b64, (int)n);
  int rc = THAW_EPARSE;
  if (len >= 0) {
    /* EVP_DecodeBlock counts the '=' padding as zero bytes. */
    if (n >= 1 && b64[n - 1] == '=')
      len--;
    if (n >= 2 && b64[n - 2] == '=')
      len--;
    const char *colon = memchr(raw, ':', (size_t)len);
    if (colon && !memchr(raw, '\0', (size_t)len)) {
      size_t ul = (size_t)(colon - (const char *)raw);
      rc = copy_n(c->user, sizeof c->user, (const char *)raw, ul);
      if (!rc)
        rc = copy_n(c->pass, sizeof c->pass, colon + 1, (size_t)len - ul - 1);
    }
  }
  OPENSSL_cleanse(raw, n);
  free(raw);
  return rc;
}

int thaw_regauth_dockerconfig(const char *json, size_t len, const char *host,
                              thaw_regauth_creds_t *out) {
  memset(out, 0, sizeof *out);
  if (len > THAW_REGAUTH_CONFIG_MAX)
    return THAW_E2BIG;
  char want[THAW_REGAUTH_FIELD_MAX], key[THAW_REGAUTH_FIELD_MAX];
  int rc = thaw_regauth_host_key(host, want, sizeof want);
  if (rc)
    return rc;
  cJSON *doc = cJSON_ParseWithLength(json, len);
  if (!doc || !cJSON_IsObject(doc)) {
    cJSON_Delete(doc);
    return THAW_EPARSE;
  }
  cJSON *auths = cJSON_GetObjectItemCaseSensitive(doc, "auths");
  if (!auths)
    auths = doc; /* the legacy .dockercfg layout */
  rc = cJSON_IsObject(auths) ? THAW_ENOENT : THAW_EPARSE;
  cJSON *e;
  cJSON_ArrayForEach(e, auths) {
    if (!e->string || thaw_regauth_host_key(e->string, key, sizeof key) ||
        strcmp(key, want) != 0)
      continue;
    if (!cJSON_IsObject(e)) {
      rc = THAW_EPARSE;
      break;
    }
    cJSON *a = cJSON_GetObjectItemCaseSensitive(e, "auth");
    cJSON *u = cJSON_GetObjectItemCaseSensitive(e, "username");
    cJSON *pw = cJSON_GetObjectItemCaseSensitive(e, "password");
    if (cJSON_IsString(a) && a->valuestring[0]) {
      rc = decode_auth(a->valuestring, out);
    } else if (cJSON_IsString(u) && cJSON_IsString(pw)) {
      rc = copy_n(out->user, sizeof out->user, u->valuestring,
                  strlen(u->valuestring));
      if (!rc)
        rc = copy_n(out->pass, sizeof out->pass, pw->valuestring,
                    strlen(pw->valuestring));
    } else {
      rc = THAW_EPARSE;
    }
    break;
  }
  cJSON_Delete(doc);
  if (rc)
    OPENSSL_cleanse(out, sizeof *out);
  return rc;
}

int thaw_regauth_parse_token(const char *body, size_t len, char *token,
                             size_t cap, long *expires_in) {
  if (cap)
    token[0] = '\0';
  *expires_in = THAW_REGAUTH_TOKEN_TTL_DEFAULT;
  if (len > THAW_REGAUTH_TOKEN_MAX * 2 + 4096)
    return THAW_E2BIG;
  cJSON *doc = cJSON_ParseWithLength(body, len);
  if (!doc)
    return THAW_EPARSE;
  int rc = THAW_EPARSE;
  cJSON *t = cJSON_GetObjectItemCaseSensitive(doc, "token");
  if (!cJSON_IsString(t) || !t->valuestring[0])
    t = cJSON_GetObjectItemCaseSensitive(doc, "access_token");
  if (cJSON_IsString(t) && t->valuestring[0])
    rc = copy_n(token, cap, t->valuestring, strlen(t->valuestring));
  cJSON *e = cJSON_GetObjectItemCaseSensitive(doc, "expires_in");
  if (cJSON_IsNumber(e) && e->valuedouble >= 1 && e->valuedouble < 1e9)
    *expires_in = (long)e->valuedouble;
  cJSON_Delete(doc);
  return rc;
}

int thaw_regauth_basic_header(const thaw_regauth_creds_t *c, char *buf,
                              size_t cap) {
  static const char pre[] = "Authorization: Basic ";
  size_t ul = strlen(c->user), pl = strlen(c->pass);
  size_t raw_len = ul + 1 + pl;
  size_t need = sizeof pre - 1 + 4 * ((raw_len + 2) / 3) + 1;
  if (need > cap || raw_len > THAW_REGAUTH_USER_MAX + THAW_REGAUTH_PASS_MAX)
    return THAW_E2BIG;
  unsigned char raw[THAW_REGAUTH_USER_MAX + THAW_REGAUTH_PASS_MAX + 1];
  memcpy(raw, c->user, ul);
  raw[ul] = ':';
  memcpy(raw + ul + 1, c->pass, pl);
  memcpy(buf, pre, sizeof pre - 1);
  EVP_EncodeBlock((unsigned char *)buf + sizeof pre - 1, raw, (int)raw_len);
  OPENSSL_cleanse(raw, raw_len);
  return 0;
}

/* ---- token cache ---- */

typedef struct entry {
  char *key;   /* registry \n scope \n user */
  char *token;
  double expires;
} entry_t;

struct thaw_regauth_cache {
  entry_t *e;
  size_t n, max;
  thaw_regauth_clock_cb clock;
  void *clock_data;
};

static double mono_now(void *data) {
  (void)data;
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int thaw_regauth_cache_new(size_t max, thaw_regauth_clock_cb clock,
                           void *clock_data, thaw_regauth_cache_t **out) {
  thaw_regauth_cache_t *c = calloc(1, sizeof *c);
  if (!c)
    return THAW_ENOMEM;
  c->max = max ? max : 256;
  c->e = calloc(c->max, sizeof *c->e);
  if (!c->e) {
    free(c);
    return THAW_ENOMEM;
  }
  c->clock = clock ? clock : mono_now;
  c->clock_data = clock_data;
  *out = c;
  return 0;
}

static void entry_clear(entry_t *e) {
  free(e->key);
  if (e->token) {
    OPENSSL_cleanse(e->token, strlen(e->token));
    free(e->token);
  }
  memset(e, 0, sizeof *e);
}

void thaw_regauth_cache_free(thaw_regauth_cache_t *c) {
  if (!c)
    return;
  for (size_t i = 0; i < c->n; i++)
    entry_clear(&c->e[i]);
  free(c->e);
  free(c);
}

/* malloc'd key, or NULL. */
static char *make_key(const char *reg, const char *scope, const char *user) {
  size_t a = strlen(reg), b = strlen(scope), u = user ? strlen(user) : 0;
  char *k = malloc(a + b + u + 3);
  if (!k)
    return NULL;
  memcpy(k, reg, a);
  k[a] = '\n';
  memcpy(k + a + 1, scope, b);
  k[a + 1 + b] = '\n';
  if (u)
    memcpy(k + a + b + 2, user, u);
  k[a + b + 2 + u] = '\0';
  return k;
}

static entry_t *find(thaw_regauth_cache_t *c, const char *key) {
  for (size_t i = 0; i < c->n; i++)
    if (strcmp(c->e[i].key, key) == 0)
      return &c->e[i];
  return NULL;
}

const char *thaw_regauth_cache_get(thaw_regauth_cache_t *c,
                                   const char *registry, const char *scope,
                                   const char *user) {
  char *k = make_key(registry, scope, user);
  if (!k)
    return NULL;
  entry_t *e = find(c, k);
  free(k);
  if (!e || c->clock(c->clock_data) >= e->expires)
    return NULL;
  return e->token;
}

int thaw_regauth_cache_put(thaw_regauth_cache_t *c, const char *registry,
                           const char *scope, const char *user,
                           const char *token, long expires_in) {
  char *k = make_key(registry, scope, user);
  char *t = strdup(token);
  if (!k || !t) {
    free(k);
    free(t);
    return THAW_ENOMEM;
  }
  entry_t *e = find(c, k);
  if (!e && c->n < c->max)
    e = &c->e[c->n++];
  if (!e) { /* full: evict the entry that expires first */
    e = &c->e[0];
    for (size_t i = 1; i < c->n; i++)
      if (c->e[i].expires < e->expires)
        e = &c->e[i];
  }
  entry_clear(e);
  e->key = k;
  e->token = t;
  /* A short-lived token still gets half its life rather than none. */
  double margin = THAW_REGAUTH_TOKEN_MARGIN;
  if (margin > (double)expires_in / 2)
    margin = (double)expires_in / 2;
  e->expires = c->clock(c->clock_data) + (double)expires_in - margin;
  return 0;
}
