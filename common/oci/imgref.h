/* imgref.h - container image references: parse, validate and normalise them,
 * convert them to and from the cache-rewritten form, and derive the
 * CachedImage object name (docs/design.md, "Image references" and "CachedImage").
 *
 * Grammar and normalisation follow the Go distribution `reference` package
 * (ParseNormalizedNamed + TagNameOnly), with the host lower-cased:
 *
 *   [host[:port]/]path[:tag][@digest]
 *
 *   ubuntu                     -> docker.io/library/ubuntu:latest
 *   index.docker.io/x          -> docker.io/library/x:latest
 *   My.Reg:5000/a/b:V1@sha256:<64 hex> -> my.reg:5000/a/b:V1@sha256:<64 hex>
 *
 * Where thaw differs from the Go package, on purpose:
 *   - the host is lower-cased before the Docker Hub rules apply, so
 *     "Docker.IO/nginx" is docker.io/library/nginx:latest;
 *   - "registry-1.docker.io" is a Docker Hub alias, like "index.docker.io";
 *   - a host that is a host only because of upper case ("Foo/bar") is
 *     refused: lower-cased it would name the Hub repository foo/bar;
 *   - IPv6 hosts use the newer grammar "[" [0-9a-fA-F:]+ "]" (":" port)?;
 *   - digests are sha256/sha384/sha512 only.
 *
 * Nothing here allocates except thaw_cachedimage_name() (OpenSSL's digest
 * context); a parsed reference lives in a caller-owned thaw_imgref_t with an
 * inline buffer, so parsing on the admission path costs one pass and no heap.
 *
 * Rewritten form: <cache-host>/<registry>/<path>[:tag][@digest], where
 * <registry> encodes the lower-cased registry host as one valid path
 * component:
 *   - a DNS name or IPv4 host is kept, and the port colon becomes "__":
 *       my.reg:5000 -> my.reg__5000, localhost:5000 -> localhost__5000;
 *   - an IPv6 host "[addr]" cannot be written as is ('[', ']' and "::" are
 *     not allowed in a path component). It becomes "ipv6_x" + addr with every
 *     ':' written as '-' + "x", then "__port" if there is a port:
 *       [::1]:5000 -> ipv6_x--1x__5000, [fe80::1] -> ipv6_xfe80--1x.
 *     The 'x' sentinels let the address begin or end with "::"; the single
 *     '_' cannot occur in an encoded DNS host (host names have no '_', and
 *     "__" is only ever followed by port digits), so decoding is unambiguous.
 * thaw_imgref_unrewrite() inverts both encodings exactly. */
#ifndef THAW_IMGREF_H
#define THAW_IMGREF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Limits of the distribution grammar. */
#define THAW_IMGREF_NAME_MAX 255   /* host/path of the normalised form */
#define THAW_IMGREF_TAG_MAX 128
#define THAW_IMGREF_DIGEST_MAX 135 /* "sha512:" + 128 hex */
/* Longest normalised (or rewritten) string, without the NUL. A buffer of
 * THAW_IMGREF_STR_MAX + 1 bytes always fits format() and rewrite(). */
#define THAW_IMGREF_STR_MAX                                                    \
  (THAW_IMGREF_NAME_MAX + 1 + THAW_IMGREF_TAG_MAX + 1 + THAW_IMGREF_DIGEST_MAX)
/* Longest input accepted by parse/unrewrite; longer input is invalid. */
#define THAW_IMGREF_INPUT_MAX 1024
/* CachedImage object names are at most 52 + 1 + 10 characters. */
#define THAW_CACHEDIMAGE_NAME_MAX 63

/* A parsed, normalised reference. Caller-allocated (stack is fine); holds no
 * pointers to the input and owns nothing, so it may be copied with memcpy and
 * needs no cleanup. All offsets index `str`. */
typedef struct thaw_imgref {
  char str[THAW_IMGREF_STR_MAX + 1]; /* normalised form, NUL-terminated */
  uint16_t len;                      /* strlen(str) */
  uint16_t host_len;    /* str[0, host_len): lower-case registry host */
  uint16_t name_len;    /* str[0, name_len): host "/" path */
  uint16_t tag_off;     /* str[tag_off, +tag_len): tag, case kept */
  uint16_t tag_len;     /* 0: no tag (a digest-only reference) */
  uint16_t digest_off;  /* str[digest_off, +digest_len): "sha256:..." */
  uint16_t digest_len;  /* 0: no digest */
  bool tag_implicit;    /* the tag is the ":latest" added by normalisation */
  const char *err;      /* on failure: static reason, at most 80 chars, fit
                           for an admission warning; NULL on success */
} thaw_imgref_t;

/* Parses `len` bytes of `s` (no NUL needed) and stores the normalised
 * reference in *out. Returns 0, or THAW_EINVAL with out->err set to a short
 * static reason (empty, bad character, upper-case path, tag or digest
 * malformed, unsupported digest algorithm, wrong digest length, name over 255
 * characters, ...). Digests must be sha256, sha384 or sha512 in lower-case
 * hex of the exact length. Does not allocate. */
int thaw_imgref_parse(const char *s, size_t len, thaw_imgref_t *out);

/* Writes the normalised form (NUL-terminated) into buf. Returns 0, or
 * THAW_E2BIG if it does not fit in `cap` bytes (buf then holds ""). */
int thaw_imgref_format(const thaw_imgref_t *r, char *buf, size_t cap);

/* Writes the rewritten form of r under `cache_host` (e.g. "localhost:7439";
 * a valid lower-case registry host) into buf, NUL-terminated. `digest` (the
 * CachedImage's status.digest, e.g. "sha256:<64 hex>") pins the result: a
 * reference with a tag and no digest gets "@<digest>" after its tag, so a
 * tag moved inside the cache cannot change what the rewritten reference
 * names; a reference with a digest keeps its own and ignores `digest`.
 * NULL keeps the unpinned form. If r is already under cache_host, its
 * normalised form is written unchanged (idempotent). The result always
 * parses. Returns 0; THAW_EINVAL if cache_host is not a valid lower-case
 * host, `digest` is not a valid digest (sha256, sha384 or sha512, lower-case
 * hex of the exact length), or the rewritten name would exceed 255
 * characters; THAW_E2BIG if the result does not fit in `cap` bytes (buf then
 * holds ""). */
int thaw_imgref_rewrite(const thaw_imgref_t *r, const char *cache_host,
                        const char *digest, char *buf, size_t cap);

/* The tag-only form of a reference with both a tag and a digest
 * ("x:1@sha256:..." -> "x:1"), stored in *out (which may be r). A rewritten
 * "<cache>/x:1@<d>" may come from "x:1" (pinned by the rewrite) or from a
 * submitted "x:1@<d>"; this names the first. Returns 0, or THAW_ENOENT when
 * r lacks a tag or a digest (*out is then a copy of r). */
int thaw_imgref_tag_only(const thaw_imgref_t *r, thaw_imgref_t *out);

/* 1 when `n` bytes of `d` are a digest the grammar accepts (sha256, sha384
 * or sha512, lower-case hex of the exact length), else 0. */
int thaw_imgref_digest_valid(const char *d, size_t n);

/* Where private images are rewritten to (docs/design.md, "Confidentiality
 * and integrity of the cache"): the node's loopback forward to the cache
 * registry (both daemons' --private-cache-host, by default
 * THAW_IMGREF_PRIVATE_CACHE_HOST), under the cache's repository prefix
 * THAW_IMGREF_PRIVATE_PREFIX, which anonymous tokens never reach. */
#define THAW_IMGREF_PRIVATE_CACHE_HOST "localhost:7440"
#define THAW_IMGREF_PRIVATE_REPO "private"
#define THAW_IMGREF_PRIVATE_PREFIX THAW_IMGREF_PRIVATE_REPO "/"
/* the default's prefix of private images' rewrites */
#define THAW_IMGREF_PRIVATE_HOST                                              \
  THAW_IMGREF_PRIVATE_CACHE_HOST "/" THAW_IMGREF_PRIVATE_REPO

/* "<cache_host>/private" (the prefix of private images' rewrites) into buf,
 * NUL-terminated. Returns 0, or THAW_E2BIG (buf then holds ""). */
int thaw_imgref_private_host(const char *cache_host, char *buf, size_t cap);

/* Converts a rewritten reference back to the normalised original it was
 * made from, stored in *out. Returns 0; THAW_ENOENT if `s` is not under
 * cache_host; THAW_EINVAL if `s` does not parse or its first path component
 * is not an encoded registry host (out->err says why). Does not allocate. */
int thaw_imgref_unrewrite(const char *s, size_t len, const char *cache_host,
                          thaw_imgref_t *out);

/* Returns 1 if NUL-terminated `s` starts with cache_host + "/" (host compared
 * case-insensitively), else 0. Cheap prefix test; does not validate `s`. */
int thaw_imgref_is_rewritten(const char *s, const char *cache_host);

/* Derives the CachedImage object name from a normalised reference (at most
 * THAW_IMGREF_INPUT_MAX bytes, NUL-terminated): lower-case, runs outside
 * [a-z0-9] become '-', trim '-', cut to 52 and trim again, then '-' and the
 * first 10 hex digits of sha256 of the exact input bytes. Writes at most
 * THAW_CACHEDIMAGE_NAME_MAX + 1 bytes. Returns 0; THAW_EINVAL if the input is
 * too long or has no [a-zA-Z0-9] character; THAW_E2BIG if `cap` is too small
 * (buf then holds ""); THAW_EIO if OpenSSL fails. */
int thaw_cachedimage_name(const char *normalized, char *buf, size_t cap);

#endif
