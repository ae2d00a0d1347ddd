/* registry.h - an asynchronous OCI distribution client on thaw_http's loop:
 * manifests (HEAD, GET, PUT, DELETE), blobs (HEAD, PUT from memory, and a
 * streamed GET->PUT copy between registries with cross-repository mount and
 * sha256 verified while streaming), with anonymous, Bearer-token and Basic
 * authentication (common/oci/regauth.h).
 *
 * Rules, as in thaw_http: when a function that takes a callback returns an
 * error, the callback is never called; when it returns 0, the callback is
 * called exactly once, never before the function returns (THAW_ECANCELED
 * when the client is freed first). Strings given to a function are copied
 * before it returns; the result is library-owned and valid only during the
 * callback.
 *
 * Security: credentials and tokens are never logged. Authorization is sent
 * only to the registry host it was obtained for: redirects are followed here
 * (curl does not follow them), and the header is dropped when a redirect
 * leaves the registry's host:port. */
#ifndef THAW_REGISTRY_H
#define THAW_REGISTRY_H

#include <stddef.h>

#include "http.h"
#include "regauth.h"

#define THAW_REGISTRY_MANIFEST_MAX (4 << 20)  /* bytes of one manifest */
#define THAW_REGISTRY_ERRBODY_MAX (64 << 10)  /* bytes of an error body */
#define THAW_REGISTRY_RING (256 << 10)        /* buffer of one blob copy */
#define THAW_REGISTRY_REDIRECTS 5

typedef struct thaw_registry thaw_registry_t;

/* Called once per HTTP response from a registry or token server (status 0
 * for a transport error), e.g. for thaw_upstream_requests_total. `host` is
 * the host:port the request went to. */
typedef void (*thaw_registry_observe_cb)(const char *host, long status,
                                         void *data);

/* Makes a Bearer token for `scope` (space-separated "type:name:actions",
 * as requested from a token server) at registry `host` without asking a
 * token server: thaw-controller signs its own tokens for the cache
 * registry. Returns 0 with the token in tok (NUL-ended) and its lifetime
 * in *expires_in seconds, or non-zero when it makes none for this host
 * (the usual 401 challenge flow runs then). Asked before a request whose
 * token is not cached, so requests to that host never see a 401. */
typedef int (*thaw_registry_mint_cb)(const char *host, const char *scope,
                                     char *tok, size_t cap, long *expires_in,
                                     void *data);

typedef struct {
  /* Hosts ("host" or "host:port") spoken to over plain http; others https. */
  const char *const *insecure; /* NULL-ended; may be NULL */
  const char *ca_file;         /* extra trust anchors for https; optional */
  long timeout_ms;             /* per manifest/auth request; 0 = 60 s */
  long low_speed_secs;         /* blob stall limit; 0 = 60 s below 1 KiB/s */
  thaw_regauth_clock_cb clock; /* token expiry clock; NULL = monotonic */
  void *clock_data;
  thaw_registry_observe_cb observe; /* optional */
  void *observe_data;
  thaw_registry_mint_cb mint; /* optional: tokens made here (below) */
  void *mint_data;
} thaw_registry_opts_t;

/* Where an operation goes. `host` is a registry host as in an image
 * reference ("docker.io" means registry-1.docker.io), `repo` the repository
 * path ("library/nginx"). creds NULL = anonymous only. */
typedef struct {
  const char *host;
  const char *repo;
  const thaw_regauth_creds_t *creds;
} thaw_registry_target_t;

/* The outcome of an operation, valid during the callback only. */
typedef struct {
  /* 0, or: THAW_ENOTFOUND (404), THAW_EFORBIDDEN (401/403 after auth),
   * THAW_ETOOMANY (429; see retry_after), THAW_ESERVER (5xx), THAW_EHTTP
   * (another status), THAW_EDIGEST (bytes do not match the digest),
   * THAW_E2BIG (over a size limit), THAW_EPARSE (bad media type, schema 1,
   * bad token response), THAW_ETRANSPORT, THAW_ETIMEDOUT, THAW_ECANCELED,
   * THAW_ENOMEM. */
  int err;
  long status;          /* the last registry HTTP status, 0 if none */
  long retry_after;     /* seconds from a 429's Retry-After; 0 if none */
  int anonymous_refused; /* anonymous access (bare or with an anonymous
                            token) ended in 401/403: status.private */
  const char *message;  /* one line of reason; never NULL */
  /* Manifests: */
  const char *media_type; /* Content-Type; "" if none */
  const char *digest;     /* Docker-Content-Digest, or computed; "" if none */
  const char *body;       /* GET: the exact bytes; else NULL */
  size_t body_len;
  /* Blobs: */
  long long size;       /* HEAD: Content-Length; copy: bytes copied */
  int exists;           /* blob HEAD: 1 when present */
  int mounted;          /* copy: 1 when cross-repository mount succeeded */
  int skipped;          /* copy: 1 when the blob was already there */
} thaw_registry_result_t;

typedef void (*thaw_registry_cb)(const thaw_registry_result_t *res,
                                 void *data);
/* Bytes of a blob copy done so far (for status.progress). */
typedef void (*thaw_registry_progress_cb)(long long done, void *data);

/* Creates a client using `http` (not owned; must outlive the client).
 * Returns 0 and sets *out, or THAW_ENOMEM. */
int thaw_registry_new(thaw_http_t *http, const thaw_registry_opts_t *o,
                      thaw_registry_t **out);

/* Cancels every operation (their callbacks run with THAW_ECANCELED before
 * this returns) and frees the client. NULL does nothing. */
void thaw_registry_free(thaw_registry_t *r);

/* Writes "sha256:" and the 64 lower-case hex digits of sha256(p[0..n))
 * into out (NUL-ended): the digest of a manifest's or blob's bytes.
 * Returns 0, or THAW_EIO when OpenSSL fails. */
#define THAW_REGISTRY_DIGEST_MAX 72
int thaw_registry_digest(const void *p, size_t n,
                         char out[THAW_REGISTRY_DIGEST_MAX]);

/* Cancels every operation whose callback data satisfies match(data, ctx):
 * their callbacks run with THAW_ECANCELED before this returns, and an
 * upload in flight is abandoned (the registry never commits it). match
 * must not start or cancel operations. */
void thaw_registry_cancel_if(thaw_registry_t *r,
                             int (*match)(void *data, void *ctx), void *ctx);

/* HEAD (head = 1) or GET a manifest by tag or digest, with an Accept for OCI
 * manifest + index and Docker v2 manifest + list. GET returns the exact
 * bytes; by digest, sha256 of the bytes must equal the digest
 * (THAW_EDIGEST). Schema 1 and unknown media types: THAW_EPARSE. Bodies
 * over THAW_REGISTRY_MANIFEST_MAX: THAW_E2BIG. */
int thaw_registry_manifest_get(thaw_registry_t *r,
                               const thaw_registry_target_t *t,
                               const char *ref, int head,
                               thaw_registry_cb cb, void *data);

/* PUT a manifest's exact bytes (copied) with its media type, by tag or
 * digest. res->digest is the registry's Docker-Content-Digest. */
int thaw_registry_manifest_put(thaw_registry_t *r,
                               const thaw_registry_target_t *t,
                               const char *ref, const char *media_type,
                               const void *bytes, size_t len,
                               thaw_registry_cb cb, void *data);

/* DELETE a manifest by digest. */
int thaw_registry_manifest_delete(thaw_registry_t *r,
                                  const thaw_registry_target_t *t,
                                  const char *digest, thaw_registry_cb cb,
                                  void *data);

/* HEAD a blob: res->exists (404 is not an error here) and res->size. */
int thaw_registry_blob_head(thaw_registry_t *r,
                            const thaw_registry_target_t *t,
                            const char *digest, thaw_registry_cb cb,
                            void *data);

/* Uploads a blob from memory (copied): POST then a monolithic PUT. The
 * digest is checked against sha256 of the bytes first (THAW_EDIGEST). */
int thaw_registry_blob_put(thaw_registry_t *r,
                           const thaw_registry_target_t *t,
                           const char *digest, const void *bytes, size_t len,
                           thaw_registry_cb cb, void *data);

/* Copies blob `digest` (sha256 only) of `size` bytes (-1 if unknown) from
 * src to dst: HEAD dst (present: res->skipped); if mount_from is a repo of
 * dst's registry, POST ?mount=&from= (201: res->mounted); else a streamed
 * GET from src (redirects followed) into one PUT, through a fixed
 * THAW_REGISTRY_RING buffer with backpressure. The PUT's last byte is held
 * until sha256 of the GET matches: on mismatch, wrong size, or any failure
 * the upload is cancelled and DELETEd, and the dst never holds the blob
 * (THAW_EDIGEST on mismatch). progress may be NULL. */
int thaw_registry_blob_copy(thaw_registry_t *r,
                            const thaw_registry_target_t *src,
                            const thaw_registry_target_t *dst,
                            const char *digest, long long size,
                            const char *mount_from,
                            thaw_registry_progress_cb progress,
                            thaw_registry_cb cb, void *data);

#endif
