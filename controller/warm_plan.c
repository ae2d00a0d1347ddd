/* warm_plan.c - what one warm copies: each manifest as it is read (its
 * exact bytes, or an index narrowed to --platforms), the children still to
 * fetch, and the image's distinct blobs (a hash set on the digest, so a
 * layer shared by several children is copied and counted once). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "warm_internal.h"

warm_node_t *warm_add_node(thaw_warm_t *wm, const char *digest,
                           const char *media, int depth) {
  if (wm->nnodes == wm->capnodes) {
    size_t cap = wm->capnodes ? wm->capnodes * 2 : 8;
    warm_node_t **n = realloc(wm->nodes, cap * sizeof *n);
    if (!n)
      return NULL;
    wm->nodes = n;
    wm->capnodes = cap;
  }
  warm_node_t *n = calloc(1, sizeof *n);
  if (!n)
    return NULL;
  n->wm = wm;
  snprintf(n->digest, sizeof n->digest, "%s", digest);
  snprintf(n->media, sizeof n->media, "%s", media);
  n->depth = depth;
  wm->nodes[wm->nnodes++] = n;
  return n;
}

static size_t hash_of(const char *digest) {
  uint64_t h = 1469598103934665603ull; /* FNV-1a */
  for (; *digest; digest++)
    h = (h ^ (unsigned char)*digest) * 1099511628211ull;
  return (size_t)h;
}

/* Adds a blob unless the image already lists it: 1 added, 0 known,
 * THAW_EPARSE (same digest, another size) or THAW_ENOMEM. */
static int add_blob(thaw_warm_t *wm, const warm_desc_t *d) {
  if (2 * (wm->nblobs + 1) > wm->hcap) {
    size_t cap = wm->hcap ? wm->hcap * 2 : 64;
    size_t *h = calloc(cap, sizeof *h);
    if (!h)
      return THAW_ENOMEM;
    for (size_t i = 0; i < wm->nblobs; i++) {
      size_t k = hash_of(wm->blobs[i].digest) & (cap - 1);
      while (h[k])
        k = (k + 1) & (cap - 1);
      h[k] = i + 1;
    }
    free(wm->hash);
    wm->hash = h;
    wm->hcap = cap;
  }
  size_t k = hash_of(d->digest) & (wm->hcap - 1);
  for (; wm->hash[k]; k = (k + 1) & (wm->hcap - 1)) {
    warm_blob_t *b = &wm->blobs[wm->hash[k] - 1];
    if (strcmp(b->digest, d->digest) == 0)
      return b->size == d->size ? 0 : THAW_EPARSE;
  }
  if (wm->nblobs == wm->capblobs) {
    size_t cap = wm->capblobs ? wm->capblobs * 2 : 16;
    warm_blob_t *b = realloc(wm->blobs, cap * sizeof *b);
    if (!b)
      return THAW_ENOMEM;
    wm->blobs = b;
    wm->capblobs = cap;
  }
  warm_blob_t *b = &wm->blobs[wm->nblobs];
  memset(b, 0, sizeof *b);
  b->wm = wm;
  memcpy(b->digest, d->digest, WARM_DIGEST_MAX);
  b->size = d->size;
  wm->hash[k] = ++wm->nblobs;
  return 1;
}


/* Stores the bytes to PUT, queues the children or blobs of m. */
static int take(thaw_warm_t *wm, warm_node_t *n, const warm_manifest_t *m,
                const char *body, size_t body_len) {
  const char *src = m->rewritten ? m->rewritten : body;
  size_t len = m->rewritten ? m->rewritten_len : body_len;
  if (!(n->bytes = malloc(len ? len : 1)))
    return THAW_ENOMEM;
  memcpy(n->bytes, src, len);
  n->len = len;
  int rc = 0;
  if (n == wm->nodes[0]) /* before --platforms may change it */
    memcpy(wm->upstream, n->digest, WARM_DIGEST_MAX);
  if (m->rewritten && (rc = thaw_registry_digest(n->bytes, len, n->digest)))
    return rc;
  if (m->is_index && m->n == 0 && m->all > 0)
    return thaw_errf(wm->msg, sizeof wm->msg, THAW_ENOTFOUND,
                     "no child of the index matches --platforms");
  for (size_t i = 0; i < m->n; i++) {
    const warm_desc_t *d = &m->descs[i];
    if (m->is_index) {
      if (wm->nnodes >= WARM_NODES_MAX)
        return thaw_errf(wm->msg, sizeof wm->msg, THAW_EPARSE,
                         "over %d manifests", WARM_NODES_MAX);
      if (!warm_add_node(wm, d->digest, d->media, n->depth + 1))
        return THAW_ENOMEM;
      continue;
    }
    if (wm->nblobs >= WARM_BLOBS_MAX)
      return thaw_errf(wm->msg, sizeof wm->msg, THAW_EPARSE, "over %d blobs",
                       WARM_BLOBS_MAX);
    if ((rc = add_blob(wm, d)) == THAW_EPARSE)
      return thaw_errf(wm->msg, sizeof wm->msg, rc,
                       "blob %.19s listed with two sizes", d->digest);
    if (rc < 0)
      return rc;
    if (rc == 1)
      wm->total += d->size;
  }
  return 0;
}

int warm_plan_manifest(thaw_warm_t *wm, warm_node_t *n,
                       const thaw_registry_result_t *res) {
  const char *what = n->depth == 1 ? "manifest" : "child manifest";
  char err[256] = "", sum[WARM_DIGEST_MAX];
  if (n->media[0] && strcmp(n->media, res->media_type))
    return thaw_errf(wm->msg, sizeof wm->msg, THAW_EPARSE,
                     "%s %.19s is '%.80s', its index says '%.80s'", what,
                     n->digest, res->media_type, n->media);
  wm->manifest_bytes += res->body_len;
  if (wm->manifest_bytes > WARM_MANIFEST_BYTES_MAX)
    return thaw_errf(wm->msg, sizeof wm->msg, THAW_E2BIG,
                     "manifests over %d bytes", WARM_MANIFEST_BYTES_MAX);
  if (thaw_registry_digest(res->body, res->body_len, sum))
    return THAW_EIO;
  if (n->digest[0] && strcmp(sum, n->digest))
    return thaw_errf(wm->msg, sizeof wm->msg, THAW_EDIGEST,
                     "%s %.19s hashes to %s", what, n->digest, sum);
  snprintf(n->media, sizeof n->media, "%s", res->media_type);
  memcpy(n->digest, sum, sizeof sum);
  /* Only a tag's index is filtered: a digest pins every child. */
  const char *const *filter = n->depth == 1 && !wm->pin[0]
                                  ? (const char *const *)wm->w->platforms
                                  : NULL;
  warm_manifest_t m;
  int rc = warm_manifest_parse(res->body, res->body_len, n->media, n->depth,
                               filter, &m, err, sizeof err);
  if (rc)
    return thaw_errf(wm->msg, sizeof wm->msg, rc, "%s %.19s: %s", what,
                     n->digest, err);
  rc = take(wm, n, &m, res->body, res->body_len);
  warm_manifest_clear(&m);
  if (rc && !wm->msg[0])
    snprintf(wm->msg, sizeof wm->msg, "%s", thaw_strerror(rc));
  return rc;
}
