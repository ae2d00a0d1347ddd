/* warm_internal.h - internal to warm.c and warm_manifest.c: reading image
 * manifests and indexes into the descriptors a warm copies. Pure: no I/O. */
#ifndef THAW_WARM_INTERNAL_H
#define THAW_WARM_INTERNAL_H

#include <stddef.h>

#define WARM_DIGEST_MAX 72     /* "sha256:" + 64 hex + NUL */
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
/* sha256 of the bytes as "sha256:<hex>". 0 or THAW_EIO. */
int warm_sha256(const void *p, size_t n, char out[WARM_DIGEST_MAX]);

#endif
