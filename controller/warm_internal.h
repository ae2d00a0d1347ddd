/* warm_internal.h - internal to controller/warm*.c: the state of a warmer
 * and of one warm (warm.c runs it), what a warm copies (warm_plan.c), the
 * digest -> cache repository table (warm_learn.c), and reading manifests
 * into descriptors (warm_manifest.c, pure). */
#ifndef THAW_WARM_INTERNAL_H
#define THAW_WARM_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "imgref.h"
#include "warm.h"

#define WARM_DIGEST_MAX THAW_REGISTRY_DIGEST_MAX /* "sha256:" + 64 hex + NUL */
#define WARM_MEDIA_MAX 128
#define WARM_ENTRIES_MAX 10000 /* layers of a manifest, children of an index */
#define WARM_DEPTH_MAX 2       /* an index may hold indexes, not deeper */

typedef struct {
  char digest[WARM_DIGEST_MAX];
  long long size;
  char media[WARM_MEDIA_MAX]; /* index children only */
} warm_desc_t;

/* One manifest as read. Arrays are heap-owned; warm_manifest_clear frees. */
typedef struct {
  int is_index;
  warm_desc_t *descs; /* image: config then layers; index: kept children */
  size_t n;
  size_t all;         /* index: children before the platform filter */
  char *rewritten;    /* index with the dropped children removed, or NULL
                         when every child was kept */
  size_t rewritten_len;
} warm_manifest_t;

/* Reads a manifest's exact bytes of media type `media` (one of the four
 * that registry.h accepts) at nesting `depth` (1 = the top). For an index
 * with `platforms` non-NULL, children not matching any "os/arch[/variant]"
 * entry are dropped and the index re-serialised (rewritten). Refuses
 * (THAW_EPARSE, reason in err) bad JSON, a schemaVersion other than 2, a
 * mediaType field that contradicts `media`, descriptors without a sha256
 * digest or with a negative or non-integral size, over WARM_ENTRIES_MAX
 * entries, children of unknown media type, and indexes nested deeper than
 * WARM_DEPTH_MAX. THAW_ENOMEM. On error *out is cleared. */
int warm_manifest_parse(const char *bytes, size_t len, const char *media,
                        int depth, const char *const *platforms,
                        warm_manifest_t *out, char *err, size_t errlen);
void warm_manifest_clear(warm_manifest_t *m);

/* 1 when `media` is an index or manifest list media type. */
int warm_media_is_index(const char *media);
/* 1 for "sha256:" + 64 lower-case hex. */
int warm_digest_valid(const char *d);


/* ---- state (warm.c) ---- */

#define WARM_LEARN_MAX 4096              /* digest -> cache repo entries */
#define WARM_NODES_MAX 10000             /* manifests of one image */
#define WARM_BLOBS_MAX 100000            /* distinct blobs of one image */
#define WARM_MANIFEST_BYTES_MAX (64 << 20) /* all manifests of one image */
#define WARM_REPO_MAX 256

enum { WARM_FETCH, WARM_BLOBS, WARM_PUT, WARM_DONE }; /* phases */

typedef struct {
  thaw_warm_t *wm;
  char digest[WARM_DIGEST_MAX]; /* "" for the top before it is read */
  char media[WARM_MEDIA_MAX];   /* from the parent index; "" for the top */
  char *bytes;                  /* the exact bytes to PUT */
  size_t len;
  int depth;
} warm_node_t;

typedef struct {
  thaw_warm_t *wm;
  char digest[WARM_DIGEST_MAX];
  long long size, prog; /* prog: bytes counted into progress so far */
} warm_blob_t;

typedef struct {
  char digest[WARM_DIGEST_MAX];
  char *repo;
  uint64_t stamp;
} warm_learned_t;

struct thaw_warmer {
  thaw_registry_t *reg;
  char *cache;
  char **platforms; /* NULL: no filter */
  unsigned conc;
  int closing;
  thaw_warm_t *warms; /* not yet finished */
  warm_learned_t *learned;
  size_t nlearned;
  uint64_t clock;
};

struct thaw_warm {
  thaw_warmer_t *w; /* NULL once finished */
  thaw_warm_t *prev, *next;
  int resolve, phase, finished, inflight, hold;
  char up_host[THAW_IMGREF_NAME_MAX + 1], up_repo[THAW_IMGREF_NAME_MAX + 1];
  char cache_repo[WARM_REPO_MAX], tag[THAW_IMGREF_TAG_MAX + 1];
  char pin[THAW_IMGREF_DIGEST_MAX + 1]; /* the reference's digest, or "" */
  thaw_regauth_creds_t creds;
  thaw_registry_target_t up, cache;
  thaw_warm_progress_cb progress;
  thaw_warm_done_cb done;
  void *data;
  warm_node_t **nodes;
  size_t nnodes, capnodes, next_fetch, next_put, manifest_bytes;
  warm_blob_t *blobs;
  size_t nblobs, capblobs, next_blob;
  size_t *hash, hcap; /* open addressing over blobs: index + 1, 0 empty */
  long long total, done_bytes;
  thaw_warm_result_t res;
  char msg[512], digest[WARM_DIGEST_MAX], media[WARM_MEDIA_MAX];
  char upstream[WARM_DIGEST_MAX]; /* the top's digest upstream */
};

/* ---- what one warm copies (warm_plan.c) ---- */

/* Appends a manifest to fetch; NULL when out of memory. */
warm_node_t *warm_add_node(thaw_warm_t *wm, const char *digest,
                           const char *media, int depth);
/* Takes a fetched manifest (res, a GET's result, ok) into node n: keeps the
 * bytes to PUT (an index narrowed by --platforms when it is a tag's top),
 * queues its children or its blobs, each distinct blob once. Returns 0, or
 * a THAW_E* with wm->msg saying why (the upstream's fault). */
int warm_plan_manifest(thaw_warm_t *wm, warm_node_t *n,
                       const thaw_registry_result_t *res);

/* ---- digest -> cache repository (warm_learn.c) ---- */

/* A cache repository other than not_repo known to hold digest, or NULL. */
const char *warm_learned_repo(thaw_warmer_t *w, const char *digest,
                              const char *not_repo);

#endif
