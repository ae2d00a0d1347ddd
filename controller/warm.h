/* warm.h - copy one image from its upstream registry into the cache
 * registry, byte for byte (docs/design.md, "Controller": Warm, Digests and tags).
 *
 * A warm resolves the reference upstream (GET of the manifest by tag or
 * digest), then for an index copies every selected child first (blobs, then
 * the child manifest by digest), then the image's own blobs, and PUTs the
 * top-level manifest last, so the cache never holds a manifest whose blobs
 * or children are missing. Blobs the cache already holds in the target
 * repository are skipped (HEAD); a blob the warmer knows another cache
 * repository holds is mounted; any other is streamed GET->PUT with sha256
 * verified (thaw_registry_blob_copy). At most `blob_concurrency` blob copies
 * run at once per warm.
 *
 * Push rules: a tag reference (no digest) is pushed under its tag; a
 * reference with a digest, with or without a tag, is pushed by digest only.
 * Children of an index are pushed by digest. --platforms applies to tag
 * references only: a digest pins the exact index, so all its children are
 * copied. A narrowed index is re-serialised without the dropped children,
 * so its digest in the cache differs from upstream's (see the result).
 *
 * The cache repository of "host/path" is "<encoded host>/<path>", where the
 * host is encoded as in the rewritten form (":" -> "__", see imgref.h), so
 * "<cache-host>/<cache repo>" is exactly the rewritten reference's name.
 *
 * Callback rules as in registry.h: start returns 0 and `done` runs exactly
 * once, later, on the loop (THAW_ECANCELED after thaw_warm_cancel() or
 * thaw_warmer_free()); or it returns an error and nothing runs. */
#ifndef THAW_WARM_H
#define THAW_WARM_H

#include <stddef.h>

#include "imgref.h"
#include "registry.h"

typedef struct thaw_warmer thaw_warmer_t; /* shared state of all warms */
typedef struct thaw_warm thaw_warm_t;     /* one warm in flight */

typedef struct {
  /* Where the cache registry is: "host:port" as used in thaw_registry
   * targets (the client must know whether it is http via `insecure`). */
  const char *cache_registry;
  /* "os/arch[/variant]" entries that index children must match (NULL-ended;
   * NULL or empty = every platform). Children without a platform (e.g.
   * attestation manifests with "unknown/unknown") are copied only when no
   * filter is set. */
  const char *const *platforms;
  unsigned blob_concurrency; /* per warm; 0 = 4 */
} thaw_warmer_opts_t;

/* The outcome of one warm, valid during the callback only. */
typedef struct {
  int err;              /* 0 or a THAW_E* from registry.h */
  const char *message;  /* one line; never NULL; never holds credentials */
  long retry_after;     /* seconds, from an upstream or cache 429; 0 if none */
  int anonymous_refused;/* upstream refused anonymous access: status.private */
  int upstream_failed;  /* 1 when the error came from upstream, 0 from the
                           cache registry (for messages and metrics) */
  const char *digest;   /* top-level manifest digest in the cache ("" on
                           failure) */
  const char *upstream_digest; /* the same upstream: differs only when
                           --platforms narrowed a tag's index, which is
                           then re-serialised without the dropped children
                           (the registry refuses an index whose children
                           are missing) */
  const char *media_type;
  long long size_bytes; /* every blob and manifest of the copied image,
                           children included, each counted once */
  long long bytes_upstream; /* blob bytes streamed from upstream */
  long long bytes_mounted;  /* blob bytes mounted from another cache repo */
  long long bytes_present;  /* blob bytes the cache already held */
  unsigned manifests;   /* manifests PUT (children + top) */
  unsigned blobs;       /* distinct blobs of the image */
} thaw_warm_result_t;

typedef void (*thaw_warm_done_cb)(const thaw_warm_result_t *res, void *data);
/* Bytes done of bytes known so far; total grows as manifests are read (an
 * index's children are read before their blobs are counted). Called often;
 * throttle in the caller. */
typedef void (*thaw_warm_progress_cb)(long long done, long long total,
                                      void *data);

/* One warm request. Strings are copied by thaw_warm_start. */
typedef struct {
  const char *image; /* normalised reference (imgref.h) */
  /* Upstream credentials, or NULL for anonymous then Bearer-anonymous. */
  const thaw_regauth_creds_t *creds;
  int private_; /* copy under private/ (thaw_warm_cache_repo_of) */
  thaw_warm_progress_cb progress; /* may be NULL */
  thaw_warm_done_cb done;         /* required */
  void *data;
} thaw_warm_req_t;

/* Makes a warmer on `reg` (not owned; it must outlive the warmer). Returns
 * 0 and sets *out, or THAW_EINVAL / THAW_ENOMEM. */
int thaw_warmer_new(thaw_registry_t *reg, const thaw_warmer_opts_t *o,
                    thaw_warmer_t **out);
/* Cancels every warm (their done callbacks run with THAW_ECANCELED before
 * this returns) and frees the warmer. NULL does nothing. */
void thaw_warmer_free(thaw_warmer_t *w);

/* Starts a warm. Returns 0 and sets *out (may be NULL if the caller does not
 * need the handle; the handle is invalid once done has run), THAW_EINVAL for
 * an image that does not parse or a missing callback, or THAW_ENOMEM. */
int thaw_warm_start(thaw_warmer_t *w, const thaw_warm_req_t *req,
                    thaw_warm_t **out);
/* Cancels one warm: its done runs with THAW_ECANCELED before this returns.
 * Uploads in flight are abandoned (the cache never keeps a partial blob). */
void thaw_warm_cancel(thaw_warm_t *warm);

/* Resolves a tag upstream with a manifest HEAD (refresh). `done` gets
 * res->digest and res->upstream_digest (the upstream digest), res->err, res->retry_after and
 * res->anonymous_refused; the other fields are zero. Same rules as start. */
int thaw_warm_resolve(thaw_warmer_t *w, const thaw_warm_req_t *req);

/* Writes the cache repository of a normalised reference into buf (see
 * above). Returns 0, THAW_EINVAL, or THAW_E2BIG. */
int thaw_warm_cache_repo(const char *image, char *buf, size_t cap);

/* As thaw_warm_cache_repo, under "private/" when private_ is set: a private
 * image (status.private) is cached only there, where anonymous pull tokens
 * never reach (docs/design.md, "Confidentiality and integrity"). */
#define THAW_WARM_PRIVATE_PREFIX THAW_IMGREF_PRIVATE_PREFIX
int thaw_warm_cache_repo_of(const char *image, int private_, char *buf,
                            size_t cap);

/* Remembers that cache repository `repo` holds blob `digest`, so later warms
 * of other repositories mount it (also learned from each warm). The table is
 * bounded (oldest forgotten first). */
void thaw_warmer_learn(thaw_warmer_t *w, const char *digest, const char *repo);

#endif
