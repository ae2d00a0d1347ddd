/* token.h - the cache registry's token issuer (docs/design.md,
 * "Confidentiality and integrity of the cache"): thaw-controller signs
 * Docker registry Bearer tokens for itself (push, pull, delete on every
 * repository, no HTTP round trip) and serves GET /token (the Docker token
 * specification) to everyone else, who may only pull outside `private/`.
 *
 * The cache registry checks them with auth.token: issuer THAW_TOKEN_ISSUER,
 * service THAW_TOKEN_SERVICE, rootcertbundle the key's certificate. Scopes
 * a caller may not have are left out of its token (not refused), as the
 * specification says; the registry then answers 401 and serves no bytes.
 * Tokens and credentials are never logged. */
#ifndef THAW_CONTROLLER_TOKEN_H
#define THAW_CONTROLLER_TOKEN_H

#include <stddef.h>

#include "httpd.h"
#include "imgref.h"
#include "metrics.h"

#define THAW_TOKEN_ISSUER "thaw-controller"
#define THAW_TOKEN_SERVICE "thaw-registry"
#define THAW_TOKEN_TTL_S 300 /* a label removed stops new pulls this soon */
#define THAW_TOKEN_PRIVATE_PREFIX THAW_IMGREF_PRIVATE_PREFIX

typedef struct thaw_token thaw_token_t;

/* Who asks. */
typedef enum {
  THAW_TOKEN_ANONYMOUS,  /* no credentials: pull outside private/ */
  THAW_TOKEN_NAMESPACE,  /* a namespace's thaw-pull credentials: pull, and
                            private/ while the namespace may have it */
  THAW_TOKEN_CONTROLLER, /* thaw-controller itself: everything */
} thaw_token_identity_t;

#define THAW_TOKEN_PASSWORD_LEN 43 /* base64url of 32 bytes, no padding */
#define THAW_TOKEN_NAMESPACE_MAX 63

/* 1 when pods of namespace `ns` may be served private images from the
 * cache now (labelled thaw.dev/cache-private=true, neither opted out nor
 * excluded), else 0 (unknown namespaces too). */
typedef int (*thaw_token_private_cb)(const char *ns, void *data);

/* Loads the signing key and its certificate. metrics may be NULL (no
 * thaw_token_requests_total). Returns 0, or a THAW_E* with one line in err
 * (never key material). */
int thaw_token_new(const char *key_file, const char *cert_file,
                   thaw_metrics_t *metrics, thaw_token_t **out, char *err,
                   size_t errlen);
void thaw_token_free(thaw_token_t *t);

/* The actions (THAW_REGTOKEN_* bits) `who` is granted of `requested` on
 * resource type:name; private_ok: a namespace that may have private/ now.
 * Pure: the policy, in one place. */
unsigned thaw_token_grant(thaw_token_identity_t who, int private_ok,
                          const char *type, const char *name,
                          unsigned requested);

/* Who may read private/: asked at each token request with namespace
 * credentials (without it, no namespace may). */
void thaw_token_set_private_check(thaw_token_t *t, thaw_token_private_cb cb,
                                  void *data);

/* The thaw-pull password of namespace `ns` (a DNS label): HMAC-SHA256 of
 * it under a key derived from the signing key, base64url, so every
 * replica computes it alike and nothing is stored. out gets
 * THAW_TOKEN_PASSWORD_LEN characters and a NUL. Returns 0 or
 * THAW_EINVAL (not a namespace name). */
int thaw_token_pull_password(const thaw_token_t *t, const char *ns,
                             char out[THAW_TOKEN_PASSWORD_LEN + 1]);

/* A thaw_registry_mint_cb for the controller's own registry client: a
 * token for `scope` when `host` is the cache registry (data: the
 * thaw_token_t; the cache's host:port is set by thaw_token_set_cache_host),
 * else non-zero. */
int thaw_token_mint_self(const char *host, const char *scope, char *tok,
                         size_t cap, long *expires_in, void *data);

/* The host:port the controller's own tokens are made for (copied). */
int thaw_token_set_cache_host(thaw_token_t *t, const char *host);

/* Serves one request of the token endpoint: GET /token?service=&scope=...
 * answers {token, access_token, expires_in, issued_at}; a wrong service or
 * a malformed query 400; credentials that are not a namespace's 401; a POST (the
 * OAuth2 form containerd tries first) 405, so the client falls back to
 * GET; other paths 404. Basic credentials are a namespace's thaw-pull
 * ones (user: the namespace, password: thaw_token_pull_password) or 401. */
void thaw_token_serve(thaw_token_t *t, const thaw_httpd_request_t *req,
                      thaw_httpd_reply_t *reply);

#endif
