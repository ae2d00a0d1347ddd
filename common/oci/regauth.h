/* regauth.h - registry authentication, the pure parts: WWW-Authenticate
 * challenges, Docker token responses, kubernetes.io/dockerconfigjson
 * credentials, registry host aliases and a token cache with an injected
 * clock. No I/O; common/oci/registry.c performs the flows.
 *
 * Nothing here logs; credentials and tokens are only ever copied into
 * caller-owned buffers or the cache. */
#ifndef THAW_REGAUTH_H
#define THAW_REGAUTH_H

#include <stddef.h>

#define THAW_REGAUTH_REALM_MAX 1024
#define THAW_REGAUTH_FIELD_MAX 512  /* service, scope, host */
#define THAW_REGAUTH_USER_MAX 256
#define THAW_REGAUTH_PASS_MAX 4096
#define THAW_REGAUTH_TOKEN_MAX 16384
#define THAW_REGAUTH_HEADER_MAX 8192 /* one WWW-Authenticate value */
#define THAW_REGAUTH_CONFIG_MAX (1 << 20) /* one dockerconfigjson */
#define THAW_REGAUTH_TOKEN_TTL_DEFAULT 60 /* s, when expires_in is absent */
#define THAW_REGAUTH_TOKEN_MARGIN 10 /* s taken off a token's life */

enum thaw_regauth_scheme { THAW_REGAUTH_NONE = 0, THAW_REGAUTH_BASIC,
                           THAW_REGAUTH_BEARER };

/* A parsed challenge; fields absent from the header are "". */
typedef struct {
  enum thaw_regauth_scheme scheme;
  char realm[THAW_REGAUTH_REALM_MAX];
  char service[THAW_REGAUTH_FIELD_MAX];
  char scope[THAW_REGAUTH_FIELD_MAX];
} thaw_regauth_challenge_t;

/* Credentials (user may be "" for token-only registries). */
typedef struct {
  char user[THAW_REGAUTH_USER_MAX];
  char pass[THAW_REGAUTH_PASS_MAX];
} thaw_regauth_creds_t;

/* Parses one WWW-Authenticate value: `Bearer realm="..",service="..",
 * scope=".."` (quoted or token values, commas inside quotes, \" escapes,
 * any order, case-insensitive names) or `Basic realm=".."`. Returns 0;
 * THAW_EPARSE when malformed, a Bearer challenge has no realm, or the scheme
 * is neither; THAW_E2BIG when a value or the header is over its maximum. */
int thaw_regauth_parse_challenge(const char *hdr,
                                 thaw_regauth_challenge_t *out);

/* Writes the canonical registry key of a host or dockerconfig key into buf:
 * scheme and path dropped, lower-cased, and every Docker Hub alias
 * (docker.io, index.docker.io, registry-1.docker.io, with or without
 * https:// and /v1/) becomes "docker.io". Returns 0, THAW_EINVAL for an
 * empty host, THAW_E2BIG if it does not fit. */
int thaw_regauth_host_key(const char *host, char *buf, size_t cap);

/* Finds the credentials for registry `host` in a dockerconfigjson document
 * (`{"auths": {KEY: {"auth": base64(user:pass)} | {"username", "password"}}}`;
 * a top-level object without "auths" is read as the old .dockercfg form).
 * Keys and host are compared by thaw_regauth_host_key(). Returns 0 and fills
 * *out; THAW_ENOENT when no entry matches; THAW_EPARSE for bad JSON or bad
 * base64; THAW_E2BIG over the limits. */
int thaw_regauth_dockerconfig(const char *json, size_t len, const char *host,
                              thaw_regauth_creds_t *out);

/* Reads a token response: `token` or else `access_token`, and `expires_in`
 * (THAW_REGAUTH_TOKEN_TTL_DEFAULT when absent or not positive). Returns 0;
 * THAW_EPARSE when neither token is a non-empty string; THAW_E2BIG. */
int thaw_regauth_parse_token(const char *body, size_t len, char *token,
                             size_t cap, long *expires_in);

/* Writes "Authorization: Basic base64(user:pass)" into buf. Returns 0 or
 * THAW_E2BIG. */
int thaw_regauth_basic_header(const thaw_regauth_creds_t *c, char *buf,
                              size_t cap);

/* Token cache keyed by (registry, scope, user). Clock in seconds. */
typedef struct thaw_regauth_cache thaw_regauth_cache_t;
typedef double (*thaw_regauth_clock_cb)(void *data);

/* Creates a cache (at most `max` entries; 0 = 256); clock NULL = monotonic
 * time. Returns 0 and sets *out, or THAW_ENOMEM. */
int thaw_regauth_cache_new(size_t max, thaw_regauth_clock_cb clock,
                           void *clock_data, thaw_regauth_cache_t **out);
/* NULL does nothing. Wipes the tokens. */
void thaw_regauth_cache_free(thaw_regauth_cache_t *c);
/* The token, or NULL when absent or within MARGIN of expiry. The string is
 * owned by the cache and valid until the next put or free. */
const char *thaw_regauth_cache_get(thaw_regauth_cache_t *c,
                                   const char *registry, const char *scope,
                                   const char *user);
/* Stores a copy of token for expires_in seconds (replacing any entry for
 * the key; evicting the entry nearest expiry when full). 0 or THAW_ENOMEM. */
int thaw_regauth_cache_put(thaw_regauth_cache_t *c, const char *registry,
                           const char *scope, const char *user,
                           const char *token, long expires_in);

#endif
