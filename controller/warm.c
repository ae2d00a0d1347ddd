/* warm.c - copies one image into the cache registry (warm.h) in three
 * phases: fetch every manifest upstream (the top, then children as they
 * are read), copy the image's distinct blobs (at most blob_concurrency at
 * once), then PUT the manifests in reverse order of discovery, so each
 * child lands before the index that names it and the top lands last.
 *
 * The registry client has no per-operation cancel, so a finished warm
 * (failure, cancel, free) detaches: its done has run, and the struct lives
 * on only until its operations in flight report back, ignored. */
#include "warm.h"

#include <openssl/crypto.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "imgref.h"
#include "warm_internal.h"

/* ---- lifetime ---- */

static void warm_destroy(thaw_warm_t *wm) {
  for (size_t i = 0; i < wm->nnodes; i++) {
    free(wm->nodes[i]->bytes);
    free(wm->nodes[i]);
  }
  free(wm->nodes);
  free(wm->blobs);
  free(wm->hash);
  OPENSSL_cleanse(&wm->creds, sizeof wm->creds);
  free(wm);
}

/* Frees a finished warm once nothing refers to it any more. */
static void warm_release(thaw_warm_t *wm) {
  if (wm->finished && wm->inflight == 0 && wm->hold == 0)
    warm_destroy(wm);
}

/* Runs done once. The caller holds the warm (hold or an op) and touches
 * neither it nor the warmer afterwards except to release. */
static void finish(thaw_warm_t *wm, int err) {
  if (wm->finished)
    return;
  thaw_warmer_t *w = wm->w;
  wm->finished = 1;
  wm->phase = WARM_DONE;
  if (wm->prev)
    wm->prev->next = wm->next;
  else if (w->warms == wm)
    w->warms = wm->next;
  if (wm->next)
    wm->next->prev = wm->prev;
  wm->w = NULL;
  thaw_warm_result_t *r = &wm->res;
  r->err = err;
  if (err && !wm->msg[0])
    snprintf(wm->msg, sizeof wm->msg, "%s", thaw_strerror(err));
  r->message = wm->msg;
  if (!err && !wm->resolve && wm->nnodes) {
    snprintf(wm->digest, sizeof wm->digest, "%s", wm->nodes[0]->digest);
    snprintf(wm->media, sizeof wm->media, "%s", wm->nodes[0]->media);
  }
  if (err)
    wm->digest[0] = wm->media[0] = wm->upstream[0] = '\0';
  r->digest = wm->digest;
  r->upstream_digest = wm->upstream[0] ? wm->upstream : wm->digest;
  r->media_type = wm->media;
  r->blobs = (unsigned)wm->nblobs;
  if (!wm->resolve) {
    r->size_bytes = 0;
    for (size_t i = 0; i < wm->nblobs; i++)
      r->size_bytes += wm->blobs[i].size;
    for (size_t i = 0; i < wm->nnodes; i++)
      r->size_bytes += (long long)wm->nodes[i]->len;
  }
  wm->done(r, wm->data);
}

static void failf(thaw_warm_t *wm, int err, int upstream, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void failf(thaw_warm_t *wm, int err, int upstream, const char *fmt,
                  ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(wm->msg, sizeof wm->msg, fmt, ap);
  va_end(ap);
  wm->res.upstream_failed = upstream;
  finish(wm, err);
}

/* A failed registry operation ends the warm with its reason. */
static void fail_res(thaw_warm_t *wm, const thaw_registry_result_t *res,
                     int upstream, const char *what) {
  wm->res.retry_after = res->retry_after;
  if (upstream)
    wm->res.anonymous_refused = res->anonymous_refused;
  failf(wm, res->err, upstream, "%s: %s", what, res->message);
}

static void report_progress(thaw_warm_t *wm) {
  if (wm->progress)
    wm->progress(wm->done_bytes, wm->total, wm->data);
}

/* ---- the phases ---- */

static void on_manifest(const thaw_registry_result_t *res, void *data);
static void on_blob(const thaw_registry_result_t *res, void *data);
static void on_blob_progress(long long done, void *data);
static void on_put(const thaw_registry_result_t *res, void *data);

/* Starts what may start now; finishes the warm after the last PUT. */
static void pump(thaw_warm_t *wm) {
  thaw_warmer_t *w = wm->w;
  int rc;
  if (wm->phase == WARM_FETCH) {
    while (wm->inflight < (int)w->conc && wm->next_fetch < wm->nnodes) {
      warm_node_t *n = wm->nodes[wm->next_fetch++];
      if ((rc = thaw_registry_manifest_get(w->reg, &wm->up, n->digest, 0,
                                           on_manifest, n))) {
        failf(wm, rc, 1, "manifest %.19s: %s", n->digest, thaw_strerror(rc));
        return;
      }
      wm->inflight++;
    }
    if (wm->inflight || wm->next_fetch < wm->nnodes)
      return;
    wm->phase = WARM_BLOBS;
  }
  if (wm->phase == WARM_BLOBS) {
    while (wm->inflight < (int)w->conc && wm->next_blob < wm->nblobs) {
      warm_blob_t *b = &wm->blobs[wm->next_blob++];
      const char *from = warm_learned_repo(w, b->digest, wm->cache_repo);
      if ((rc = thaw_registry_blob_copy(w->reg, &wm->up, &wm->cache,
                                        b->digest, b->size, from,
                                        on_blob_progress, on_blob, b))) {
        failf(wm, rc, 0, "blob %.19s: %s", b->digest, thaw_strerror(rc));
        return;
      }
      wm->inflight++;
    }
    if (wm->inflight || wm->next_blob < wm->nblobs)
      return;
    wm->phase = WARM_PUT;
    wm->next_put = wm->nnodes;
  }
  if (wm->phase == WARM_PUT && wm->inflight == 0) {
    if (wm->next_put == 0) {
      finish(wm, 0);
      return;
    }
    warm_node_t *n = wm->nodes[--wm->next_put];
    /* The top goes under its tag unless the reference pins a digest. */
    const char *ref = wm->next_put == 0 && !wm->pin[0] ? wm->tag : n->digest;
    if ((rc = thaw_registry_manifest_put(w->reg, &wm->cache, ref, n->media,
                                         n->bytes, n->len, on_put, n))) {
      failf(wm, rc, 0, "manifest PUT %.19s: %s", n->digest,
            thaw_strerror(rc));
      return;
    }
    wm->inflight++;
  }
}

static void on_manifest(const thaw_registry_result_t *res, void *data) {
  warm_node_t *n = data;
  thaw_warm_t *wm = n->wm;
  int rc;
  wm->inflight--;
  wm->hold++;
  if (wm->finished) {
  } else if (res->err) {
    char what[160];
    snprintf(what, sizeof what, "upstream %s %.19s",
             n->depth == 1 ? "manifest" : "child manifest",
             n->digest[0] ? n->digest : wm->tag);
    fail_res(wm, res, 1, what);
  } else if ((rc = warm_plan_manifest(wm, n, res))) {
    wm->res.upstream_failed = 1;
    finish(wm, rc);
  } else {
    report_progress(wm);
    pump(wm);
  }
  wm->hold--;
  warm_release(wm);
}

static void on_blob_progress(long long done, void *data) {
  warm_blob_t *b = data;
  thaw_warm_t *wm = b->wm;
  if (wm->finished || done <= b->prog)
    return;
  wm->done_bytes += done - b->prog;
  b->prog = done;
  report_progress(wm);
}

static void on_blob(const thaw_registry_result_t *res, void *data) {
  warm_blob_t *b = data;
  thaw_warm_t *wm = b->wm;
  wm->inflight--;
  wm->hold++;
  if (wm->finished) {
  } else if (res->err) {
    /* The copy's reason names its step: the GET (and a digest that does
     * not match) is upstream's; HEAD, POST, PUT are the cache's. */
    int up = res->err == THAW_EDIGEST || !strncmp(res->message, "blob GET", 8)
             || !strncmp(res->message, "token", 5);
    char what[40];
    snprintf(what, sizeof what, "blob %.19s", b->digest);
    fail_res(wm, res, up, what);
  } else {
    if (res->skipped)
      wm->res.bytes_present += b->size;
    else if (res->mounted)
      wm->res.bytes_mounted += b->size;
    else
      wm->res.bytes_upstream += res->size;
    wm->done_bytes += b->size - b->prog;
    b->prog = b->size;
    thaw_warmer_learn(wm->w, b->digest, wm->cache_repo);
    report_progress(wm);
    pump(wm);
  }
  wm->hold--;
  warm_release(wm);
}

static void on_put(const thaw_registry_result_t *res, void *data) {
  warm_node_t *n = data;
  thaw_warm_t *wm = n->wm;
  wm->inflight--;
  wm->hold++;
  if (wm->finished) {
  } else if (res->err) {
    char what[48];
    snprintf(what, sizeof what, "manifest PUT %.19s", n->digest);
    fail_res(wm, res, 0, what);
  } else if (res->digest[0] && strcmp(res->digest, n->digest)) {
    failf(wm, THAW_EDIGEST, 0, "cache stored manifest %.19s as %.80s",
          n->digest, res->digest);
  } else {
    wm->res.manifests++;
    pump(wm);
  }
  wm->hold--;
  warm_release(wm);
}

/* ---- resolve ---- */

static void on_resolved(const thaw_registry_result_t *res, void *data) {
  thaw_warm_t *wm = data;
  wm->inflight--;
  wm->hold++;
  if (wm->finished) {
  } else if (res->err) {
    fail_res(wm, res, 1, "manifest HEAD");
  } else if (!warm_digest_valid(res->digest) && !res->body) {
    /* No Docker-Content-Digest on the HEAD: GET and hash the bytes. */
    const char *ref = wm->pin[0] ? wm->pin : wm->tag;
    int rc = thaw_registry_manifest_get(wm->w->reg, &wm->up, ref, 0,
                                        on_resolved, wm);
    if (rc)
      failf(wm, rc, 1, "manifest GET: %s", thaw_strerror(rc));
    else
      wm->inflight++;
  } else if (!warm_digest_valid(res->digest)) {
    failf(wm, THAW_EPARSE, 1, "upstream digest is not sha256");
  } else {
    snprintf(wm->digest, sizeof wm->digest, "%s", res->digest);
    snprintf(wm->media, sizeof wm->media, "%s", res->media_type);
    finish(wm, 0);
  }
  wm->hold--;
  warm_release(wm);
}

/* ---- public ---- */

int thaw_warm_cache_repo(const char *image, char *buf, size_t cap) {
  thaw_imgref_t r;
  char out[THAW_IMGREF_STR_MAX + 1];
  if (!image || !buf || thaw_imgref_parse(image, strlen(image), &r))
    return THAW_EINVAL;
  /* Rewrite under a sentinel cache host, then keep the name after it. */
  const char *host = "thaw.invalid";
  if (r.host_len == strlen(host) && !strncmp(r.str, host, r.host_len))
    host = "thaw2.invalid";
  int rc = thaw_imgref_rewrite(&r, host, NULL, out, sizeof out);
  if (rc)
    return rc;
  size_t skip = strlen(host) + 1, suffix = r.len - r.name_len;
  size_t n = strlen(out) - suffix - skip;
  if (n + 1 > cap) {
    if (cap)
      buf[0] = '\0';
    return THAW_E2BIG;
  }
  memcpy(buf, out + skip, n);
  buf[n] = '\0';
  return 0;
}

int thaw_warm_cache_repo_of(const char *image, int private_, char *buf,
                            size_t cap) {
  size_t pn = private_ ? strlen(THAW_WARM_PRIVATE_PREFIX) : 0;
  if (!buf || cap <= pn)
    return buf ? THAW_E2BIG : THAW_EINVAL;
  int rc = thaw_warm_cache_repo(image, buf + pn, cap - pn);
  if (rc == 0 && pn)
    memcpy(buf, THAW_WARM_PRIVATE_PREFIX, pn);
  else if (rc != 0)
    buf[0] = '\0';
  return rc;
}

int thaw_warmer_new(thaw_registry_t *reg, const thaw_warmer_opts_t *o,
                    thaw_warmer_t **out) {
  if (!reg || !o || !o->cache_registry || !o->cache_registry[0] || !out)
    return THAW_EINVAL;
  thaw_warmer_t *w = calloc(1, sizeof *w);
  if (!w)
    return THAW_ENOMEM;
  w->reg = reg;
  w->conc = o->blob_concurrency ? o->blob_concurrency : 4;
  size_t n = 0;
  while (o->platforms && o->platforms[n])
    n++;
  if (!(w->cache = strdup(o->cache_registry)) ||
      !(w->learned = calloc(WARM_LEARN_MAX, sizeof *w->learned)) ||
      (n && !(w->platforms = calloc(n + 1, sizeof *w->platforms))))
    goto fail;
  for (size_t i = 0; i < n; i++)
    if (!(w->platforms[i] = strdup(o->platforms[i])))
      goto fail;
  *out = w;
  return 0;
fail:
  thaw_warmer_free(w);
  return THAW_ENOMEM;
}

/* A warm's registry operations have as data the warm itself (a resolve)
 * or one of its nodes or blobs, which both start with the warm. */
static int owned_by(void *data, void *wm) {
  return data == wm || *(thaw_warm_t **)data == wm;
}

void thaw_warm_cancel(thaw_warm_t *wm) {
  if (!wm || wm->finished)
    return;
  thaw_registry_t *reg = wm->w->reg;
  wm->hold++;
  snprintf(wm->msg, sizeof wm->msg, "warm canceled");
  finish(wm, THAW_ECANCELED);
  /* Stop its transfers too, so a canceled warm moves no more bytes. */
  thaw_registry_cancel_if(reg, owned_by, wm);
  wm->hold--;
  warm_release(wm);
}

void thaw_warmer_free(thaw_warmer_t *w) {
  if (!w)
    return;
  w->closing = 1;
  while (w->warms)
    thaw_warm_cancel(w->warms);
  for (size_t i = 0; i < w->nlearned; i++)
    free(w->learned[i].repo);
  free(w->learned);
  for (char **p = w->platforms; p && *p; p++)
    free(*p);
  free(w->platforms);
  free(w->cache);
  free(w);
}

/* Makes a warm (or a resolve) for req, linked into w; NULL with *rc set. */
static thaw_warm_t *warm_new(thaw_warmer_t *w, const thaw_warm_req_t *req,
                             int *rc) {
  thaw_imgref_t r;
  *rc = THAW_EINVAL;
  if (!w || w->closing || !req || !req->image || !req->done ||
      thaw_imgref_parse(req->image, strlen(req->image), &r))
    return NULL;
  /* The client verifies sha256 only; a sha384/512 pin cannot be checked. */
  if (r.digest_len && strncmp(r.str + r.digest_off, "sha256:", 7))
    return NULL;
  thaw_warm_t *wm = calloc(1, sizeof *wm);
  if (!wm) {
    *rc = THAW_ENOMEM;
    return NULL;
  }
  wm->w = w;
  if ((*rc = thaw_warm_cache_repo_of(req->image, req->private_,
                                     wm->cache_repo,
                                     sizeof wm->cache_repo))) {
    free(wm);
    return NULL;
  }
  snprintf(wm->up_host, sizeof wm->up_host, "%.*s", r.host_len, r.str);
  snprintf(wm->up_repo, sizeof wm->up_repo, "%.*s",
           r.name_len - r.host_len - 1, r.str + r.host_len + 1);
  snprintf(wm->tag, sizeof wm->tag, "%.*s", r.tag_len, r.str + r.tag_off);
  snprintf(wm->pin, sizeof wm->pin, "%.*s", r.digest_len,
           r.str + r.digest_off);
  if (req->creds)
    wm->creds = *req->creds;
  wm->up = (thaw_registry_target_t){wm->up_host, wm->up_repo,
                                    req->creds ? &wm->creds : NULL};
  wm->cache = (thaw_registry_target_t){w->cache, wm->cache_repo, NULL};
  wm->progress = req->progress;
  wm->done = req->done;
  wm->data = req->data;
  *rc = 0;
  return wm;
}

static void link_warm(thaw_warmer_t *w, thaw_warm_t *wm) {
  wm->next = w->warms;
  if (w->warms)
    w->warms->prev = wm;
  w->warms = wm;
  wm->inflight = 1;
}

int thaw_warm_start(thaw_warmer_t *w, const thaw_warm_req_t *req,
                    thaw_warm_t **out) {
  int rc;
  thaw_warm_t *wm = warm_new(w, req, &rc);
  if (!wm)
    return rc;
  warm_node_t *top = warm_add_node(wm, wm->pin, "", 1);
  if (!top) {
    warm_destroy(wm);
    return THAW_ENOMEM;
  }
  wm->next_fetch = 1;
  const char *ref = wm->pin[0] ? wm->pin : wm->tag;
  if ((rc = thaw_registry_manifest_get(w->reg, &wm->up, ref, 0, on_manifest,
                                       top))) {
    warm_destroy(wm);
    return rc;
  }
  link_warm(w, wm);
  if (out)
    *out = wm;
  return 0;
}

int thaw_warm_resolve(thaw_warmer_t *w, const thaw_warm_req_t *req) {
  int rc;
  thaw_warm_t *wm = warm_new(w, req, &rc);
  if (!wm)
    return rc;
  wm->resolve = 1;
  const char *ref = wm->pin[0] ? wm->pin : wm->tag;
  if ((rc = thaw_registry_manifest_get(w->reg, &wm->up, ref, 1, on_resolved,
                                       wm))) {
    warm_destroy(wm);
    return rc;
  }
  link_warm(w, wm);
  return 0;
}
