/* regtoken.h - Docker registry bearer tokens (the token specification's
 * JWT) signed by thaw itself: thaw-controller mints its own push/delete
 * tokens for the cache registry with no HTTP round trip, and serves the
 * token endpoint for everyone else. distribution verifies them with
 * auth.token: issuer, service (= aud), and the header's x5c chain checked
 * against its rootcertbundle.
 *
 * Nothing here logs; key material never leaves the signer (error lines name
 * files and reasons only). */
#ifndef THAW_REGTOKEN_H
#define THAW_REGTOKEN_H

#include <stddef.h>
#include <stdint.h>

#define THAW_REGTOKEN_KEYFILE_MAX (64 * 1024)   /* one PEM private key */
#define THAW_REGTOKEN_CERTFILE_MAX (256 * 1024) /* PEM leaf + chain */
#define THAW_REGTOKEN_CHAIN_MAX 4    /* certificates sent in x5c */
#define THAW_REGTOKEN_ACCESS_MAX 64  /* access entries in one token */
#define THAW_REGTOKEN_TYPE_MAX 64    /* "repository", "registry", ... */
#define THAW_REGTOKEN_NAME_MAX 512   /* [host[:port]/]repository path */
#define THAW_REGTOKEN_SCOPE_MAX 1024 /* one "type:name:actions" */
#define THAW_REGTOKEN_MAX 16384      /* a token fits in this, NUL included */
#define THAW_REGTOKEN_SKEW 5         /* s: nbf = now - SKEW */

/* A loaded key and the certificates sent with its tokens; not changed by
 * signing. */
typedef struct thaw_regtoken_signer thaw_regtoken_signer_t;

/* Loads a PEM private key (RSA of at least 2048 bits, signing RS256; or EC
 * P-256, signing ES256) and a PEM certificate file whose first certificate
 * holds that key's public key (sent in x5c; further certificates in the
 * file, up to THAW_REGTOKEN_CHAIN_MAX in all, follow it as the chain).
 * Encrypted keys are refused, never prompted for. Returns 0 and *out (free
 * with thaw_regtoken_signer_free); otherwise *out is NULL, err[errlen] gets
 * one line saying why, and the code is a negative errno of opening/reading
 * a file (THAW_ENOENT when missing), THAW_E2BIG (file over its maximum),
 * THAW_EPARSE (no PEM key/certificate in it), THAW_EINVAL (another key
 * type or size, a certificate that does not match the key or has expired)
 * or THAW_ENOMEM. */
int thaw_regtoken_signer_load(const char *key_file, const char *cert_file,
                              thaw_regtoken_signer_t **out, char *err,
                              size_t errlen);

/* Frees the signer and wipes its key; NULL does nothing. */
void thaw_regtoken_signer_free(thaw_regtoken_signer_t *s);

/* HMAC-SHA256 of msg under a key derived from the signing key (SHA-256 of
 * a label and the private key's DER): a secret that every holder of the
 * key computes alike, e.g. per-namespace pull passwords that need no
 * storage. Returns 0, THAW_EINVAL or THAW_ENOMEM. */
int thaw_regtoken_signer_mac(const thaw_regtoken_signer_t *s, const void *msg,
                             size_t len, uint8_t out[32]);

/* "RS256" or "ES256": the JWS alg the signer uses. Never NULL. */
const char *thaw_regtoken_signer_alg(const thaw_regtoken_signer_t *s);

/* Access actions, a bit set. */
enum {
  THAW_REGTOKEN_PULL = 1,
  THAW_REGTOKEN_PUSH = 2,
  THAW_REGTOKEN_DELETE = 4,
  THAW_REGTOKEN_ALL = 8 /* "*" */
};

/* One granted access entry:
 * {"type":"repository","name":"a/b","actions":["pull","push"]}.
 * actions 0 gives "actions":[] (nothing granted, as the spec answers a
 * scope the account may not have). */
typedef struct {
  const char *type, *name;
  unsigned actions;
} thaw_regtoken_access_t;

typedef struct {
  const char *issuer;   /* iss: the registry's auth.token.issuer */
  const char *subject;  /* sub: the account, "" for anonymous */
  const char *audience; /* aud: the registry's auth.token.service */
  int64_t now;          /* unix seconds: iat = now, nbf = now - SKEW */
  int64_t ttl;          /* seconds, > 0: exp = now + ttl */
  const thaw_regtoken_access_t *access;
  size_t naccess;
} thaw_regtoken_claims_t;

/* Writes the compact JWS (base64url header.claims.signature, no padding)
 * into out[cap], NUL-ended. Header {"typ":"JWT","alg":ALG,"x5c":[base64 DER
 * certificates]}; claims iss, sub, aud, exp, nbf, iat, jti (16 random bytes
 * in hex), access (in the given order, [] when naccess is 0). ES256
 * signatures are JWS's raw 64-byte r||s. Strings are JSON-escaped. Returns
 * 0; THAW_EINVAL (NULL/empty issuer or audience, NULL subject, ttl <= 0,
 * an access entry with an empty type or name, over ACCESS_MAX entries, no
 * random bytes); THAW_E2BIG when the token does not fit in cap (out is then
 * ""); THAW_ENOMEM. */
int thaw_regtoken_sign(const thaw_regtoken_signer_t *s,
                       const thaw_regtoken_claims_t *c, char *out, size_t cap);

/* Parses one requested scope "type:name:actions" of the token spec. The
 * name may itself hold ':' ("repository:localhost:5000/a:pull,push"): the
 * type ends at the first ':', the actions start after the last one. Actions
 * are comma-separated; pull, push, delete and "*" set their bits, unknown
 * ones are ignored (not an error), none gives 0. type is [a-z0-9]+ with an
 * optional "(class)" of the same; name is [A-Za-z0-9._/:-]+ not starting
 * with '/'. Writes type into type[type_cap] and name into name[name_cap].
 * Returns 0, or THAW_EINVAL (NULL, fewer than two ':', an empty type or
 * name, bad characters, over THAW_REGTOKEN_SCOPE_MAX, or a part that does
 * not fit its buffer); on error the buffers are "" and *actions 0. */
int thaw_regtoken_parse_scope(const char *scope, char *type, size_t type_cap,
                              char *name, size_t name_cap, unsigned *actions);

#endif
