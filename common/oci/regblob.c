/* regblob.c - blob HEAD, upload from memory, and the streamed copy between
 * registries: GET -> ring buffer -> PUT, sha256 verified while streaming,
 * the PUT's last byte held back until the digest matches. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "regcall.h"

enum { ST_HEAD, ST_POST, ST_STREAM, ST_CLEANUP };

static int valid_digest(const char *d) {
  if (!d || strncmp(d, "sha256:", 7) || strlen(d) != 71)
    return 0;
  for (const char *p = d + 7; *p; p++)
    if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f')))
      return 0;
  return 1;
}

static void blob_head_done(regcall_t *c, const thaw_http_result_t *res) {
  regop_t *op = c->op;
  if (!res->err && res->status == 404) {
    op->res.status = 404;
    regop_finish(op, 0);
    return;
  }
  if (res->err || res->status != 200) {
    regop_finish(op, regop_fail_status(op, res, "blob HEAD"));
    return;
  }
  const char *cl = thaw_http_header(c->cur, "Content-Length");
  op->res.status = 200;
  op->res.exists = 1;
  op->res.size = cl ? strtoll(cl, NULL, 10) : -1;
  regop_finish(op, 0);
}

int thaw_registry_blob_head(thaw_registry_t *r,
                            const thaw_registry_target_t *t,
                            const char *digest, thaw_registry_cb cb,
                            void *data) {
  if (!valid_digest(digest))
    return THAW_EINVAL;
  regop_t *op = regop_new(r, t, cb, data);
  if (!op)
    return THAW_EINVAL;
  char path[128];
  snprintf(path, sizeof path, "/blobs/%.71s", digest);
  int rc = regcall_init(&op->a, op, t->host, t->repo, "HEAD", path, 0, NULL);
  op->a.done = blob_head_done;
  if (!rc)
    rc = regcall_go(&op->a);
  if (rc)
    regop_free_unstarted(op);
  return rc;
}

/* ---- the upload session (shared by put and copy) ---- */

static void cleanup_done(regcall_t *c, const thaw_http_result_t *res) {
  (void)res;
  regop_finish(c->op, c->op->err);
}

/* Ends a failed transfer: DELETE the upload session, then report. */
static void fail_transfer(regop_t *op) {
  if (!op->a_done || !op->b_done || op->step == ST_CLEANUP)
    return;
  if (op->err == 0) {
    regop_finish(op, 0);
    return;
  }
  if (!op->upload[0] || op->r->closing) {
    regop_finish(op, op->err);
    return;
  }
  op->step = ST_CLEANUP;
  regcall_t *c = &op->del;
  regcall_init(c, op, op->b.host, op->drepo, "DELETE", "", 1, NULL);
  snprintf(c->url, sizeof c->url, "%s", op->upload);
  c->done = cleanup_done;
  if (regcall_go(c))
    regop_finish(op, op->err);
}

/* The upload URL with "digest=" appended, into c->url. */
static int put_url(regop_t *op, regcall_t *c) {
  int n = snprintf(c->url, sizeof c->url, "%s%cdigest=%s", op->upload,
                   strchr(op->upload, '?') ? '&' : '?', op->digest);
  return n < 0 || (size_t)n >= sizeof c->url ? THAW_E2BIG : 0;
}

static void put_done(regcall_t *c, const thaw_http_result_t *res) {
  regop_t *op = c->op;
  op->b_done = 1;
  if (res->err || res->status != 201) {
    int e = regop_fail_status(op, res, "blob PUT");
    if (!op->err)
      op->err = e;
    if (!op->a_done) {
      regcall_cancel(&op->a); /* get_done ends the transfer */
      return;
    }
  } else {
    op->res.status = 201;
    op->res.size = op->total;
  }
  fail_transfer(op);
}

static int stream_start(regop_t *op);

static void post_done(regcall_t *c, const thaw_http_result_t *res) {
  regop_t *op = c->op;
  if (!res->err && res->status == 201 && op->mount_from[0]) {
    op->res.mounted = 1;
    op->res.status = 201;
    regop_finish(op, 0);
    return;
  }
  const char *loc = c->cur ? thaw_http_header(c->cur, "Location") : NULL;
  if (res->err || res->status != 202 || !loc) {
    regop_finish(op, regop_fail_status(op, res, "blob upload POST"));
    return;
  }
  /* Resolve a relative Location against the registry's origin. */
  int n = loc[0] == '/' ? snprintf(op->upload, sizeof op->upload, "%s%s",
                                   c->origin, loc)
                        : snprintf(op->upload, sizeof op->upload, "%s", loc);
  if (n < 0 || (size_t)n >= sizeof op->upload) {
    regop_finish(op, THAW_E2BIG);
    return;
  }
  if (op->copy_len || op->copy) { /* blob_put: one monolithic PUT */
    op->a_done = 1;
    regcall_t *p = &op->b;
    int rc = regcall_init(p, op, c->host, op->drepo, "PUT", "", 1, NULL);
    if (!rc)
      rc = put_url(op, p);
    p->hdr[p->nhdr++] = "Content-Type: application/octet-stream";
    p->body = op->copy ? op->copy : "";
    p->body_len = op->copy_len;
    p->done = put_done;
    if (!rc)
      rc = regcall_go(p);
    if (rc) {
      op->err = rc;
      op->b_done = 1;
      fail_transfer(op);
    }
    return;
  }
  int rc = stream_start(op);
  if (rc) {
    op->err = rc;
    op->a_done = op->b_done = 1;
    fail_transfer(op);
  }
}

static int post_start(regop_t *op, const char *host) {
  char path[THAW_REGAUTH_FIELD_MAX + 128], extra[THAW_REGAUTH_FIELD_MAX + 32];
  op->step = ST_POST;
  if (op->mount_from[0]) {
    snprintf(path, sizeof path, "/blobs/uploads/?mount=%.71s&from=%.255s",
             op->digest, op->mount_from);
    snprintf(extra, sizeof extra, "repository:%s:pull", op->mount_from);
  } else {
    snprintf(path, sizeof path, "/blobs/uploads/");
  }
  int rc = regcall_init(&op->a, op, host, op->drepo, "POST", path, 1,
                        op->mount_from[0] ? extra : NULL);
  op->a.done = post_done;
  return rc ? rc : regcall_go(&op->a);
}

int thaw_registry_blob_put(thaw_registry_t *r,
                           const thaw_registry_target_t *t,
                           const char *digest, const void *bytes, size_t len,
                           thaw_registry_cb cb, void *data) {
  char sum[72];
  if (!valid_digest(digest) || (!bytes && len) || !t ||
      strlen(t->repo ? t->repo : "") >= THAW_REGAUTH_FIELD_MAX)
    return THAW_EINVAL;
  if (thaw_registry_digest(bytes ? bytes : "", len, sum))
    return THAW_EIO;
  if (strcmp(sum, digest) != 0)
    return THAW_EDIGEST;
  regop_t *op = regop_new(r, t, cb, data);
  if (!op)
    return THAW_EINVAL;
  snprintf(op->digest, sizeof op->digest, "%s", digest);
  snprintf(op->drepo, sizeof op->drepo, "%s", t->repo);
  op->copy = malloc(len ? len : 1);
  op->copy_len = len;
  int rc = op->copy ? 0 : THAW_ENOMEM;
  if (!rc) {
    memcpy(op->copy, bytes ? bytes : "", len);
    rc = post_start(op, t->host);
  }
  if (rc)
    regop_free_unstarted(op);
  return rc;
}

/* ---- the streamed copy ---- */

static int get_data(thaw_http_req_t *req, const char *buf, size_t len,
                    void *data) {
  regop_t *op = data;
  (void)req;
  if (len > THAW_REGISTRY_RING)
    return THAW_E2BIG;
  if (len > THAW_REGISTRY_RING - op->rlen) { /* full: backpressure */
    op->get_paused = 1;
    op->blocked = len;
    return THAW_EAGAIN;
  }
  if (op->size >= 0 && op->total + (long long)len > op->size) {
    snprintf(op->msg, sizeof op->msg, "blob longer than its %lld bytes",
             op->size);
    return THAW_EDIGEST;
  }
  if (EVP_DigestUpdate(op->md, buf, len) != 1)
    return THAW_EIO;
  size_t tail = (op->rhead + op->rlen) % THAW_REGISTRY_RING;
  size_t first = THAW_REGISTRY_RING - tail < len ? THAW_REGISTRY_RING - tail
                                                 : len;
  memcpy(op->ring + tail, buf, first);
  memcpy(op->ring, buf + first, len - first);
  op->rlen += len;
  op->total += (long long)len;
  if (op->progress)
    op->progress(op->total, op->data);
  if (op->put_paused && op->b.req) {
    op->put_paused = 0;
    thaw_http_unpause(op->b.req);
  }
  return 0;
}

static ssize_t put_read(thaw_http_req_t *req, char *buf, size_t len,
                        void *data) {
  regcall_t *c = data;
  regop_t *op = c->op;
  (void)req;
  if (op->err)
    return op->err;
  /* Hold the last byte until the digest is verified, so the registry can
   * never complete an upload of bytes that do not match. */
  size_t hold = op->verified ? 0 : 1;
  size_t n = op->rlen > hold ? op->rlen - hold : 0;
  if (n > len)
    n = len;
  if (n == 0) {
    if (op->verified && op->rlen == 0)
      return 0;
    op->put_paused = 1;
    return THAW_EAGAIN;
  }
  size_t first = THAW_REGISTRY_RING - op->rhead < n
                     ? THAW_REGISTRY_RING - op->rhead
                     : n;
  memcpy(buf, op->ring + op->rhead, first);
  memcpy(buf + first, op->ring, n - first);
  op->rhead = (op->rhead + n) % THAW_REGISTRY_RING;
  op->rlen -= n;
  if (op->get_paused && THAW_REGISTRY_RING - op->rlen >= op->blocked &&
      op->a.req) {
    op->get_paused = 0;
    thaw_http_unpause(op->a.req);
  }
  return (ssize_t)n;
}

static void get_done(regcall_t *c, const thaw_http_result_t *res) {
  regop_t *op = c->op;
  op->a_done = 1;
  if (res->err || res->status != 200) {
    int e = regop_fail_status(op, res, "blob GET");
    if (!op->err)
      op->err = e;
  } else if (op->size >= 0 && op->total != op->size) {
    snprintf(op->msg, sizeof op->msg, "blob has %lld bytes, not %lld",
             op->total, op->size);
    op->err = THAW_EDIGEST;
  } else {
    unsigned char md[32];
    unsigned int mdlen = 0;
    char sum[72];
    EVP_DigestFinal_ex(op->md, md, &mdlen);
    memcpy(sum, "sha256:", 7);
    for (int i = 0; i < 32; i++)
      snprintf(sum + 7 + 2 * i, 3, "%02x", md[i]);
    if (strcmp(sum, op->digest) != 0) {
      snprintf(op->msg, sizeof op->msg, "blob bytes hash to %.71s", sum);
      op->err = THAW_EDIGEST;
    } else {
      op->verified = 1;
    }
  }
  if (op->err) {
    if (!op->b_done)
      regcall_cancel(&op->b); /* put_done runs and ends the transfer */
    else
      fail_transfer(op);
    return;
  }
  if (op->put_paused && op->b.req) {
    op->put_paused = 0;
    thaw_http_unpause(op->b.req);
  }
  fail_transfer(op);
}

/* GET from the source and PUT to the upload session, both at once. */
static int stream_start(regop_t *op) {
  op->step = ST_STREAM;
  if (!(op->ring = malloc(THAW_REGISTRY_RING)) ||
      !(op->md = EVP_MD_CTX_new()))
    return THAW_ENOMEM;
  if (EVP_DigestInit_ex(op->md, EVP_sha256(), NULL) != 1)
    return THAW_EIO;
  regcall_t *p = &op->b;
  int rc = regcall_init(p, op, op->dhost, op->drepo, "PUT", "", 1, NULL);
  if (!rc)
    rc = put_url(op, p);
  if (rc)
    return rc;
  p->hdr[p->nhdr++] = "Content-Type: application/octet-stream";
  p->read_cb = put_read;
  p->read_len = op->size;
  p->done = put_done;
  char path[128];
  snprintf(path, sizeof path, "/blobs/%.71s", op->digest);
  regcall_t *g = &op->a;
  rc = regcall_init(g, op, op->shost, op->srepo, "GET", path, 0, NULL);
  if (rc)
    return rc;
  g->creds = op->has_screds ? &op->screds : NULL;
  g->on_data = get_data;
  g->done = get_done;
  if ((rc = regcall_go(g)))
    return rc;
  if ((rc = regcall_go(p))) {
    op->b_done = 1;
    op->err = rc;
    regcall_cancel(g);
    return 0; /* get_done ends the transfer */
  }
  return 0;
}

static void copy_head_done(regcall_t *c, const thaw_http_result_t *res) {
  regop_t *op = c->op;
  if (!res->err && res->status == 200) {
    op->res.skipped = 1;
    op->res.exists = 1;
    op->res.status = 200;
    const char *cl = thaw_http_header(c->cur, "Content-Length");
    op->res.size = cl ? strtoll(cl, NULL, 10) : op->size;
    regop_finish(op, 0);
    return;
  }
  if (res->err || res->status != 404) {
    regop_finish(op, regop_fail_status(op, res, "blob HEAD"));
    return;
  }
  int rc = post_start(op, op->dhost);
  if (rc)
    regop_finish(op, rc);
}

int thaw_registry_blob_copy(thaw_registry_t *r,
                            const thaw_registry_target_t *src,
                            const thaw_registry_target_t *dst,
                            const char *digest, long long size,
                            const char *mount_from,
                            thaw_registry_progress_cb progress,
                            thaw_registry_cb cb, void *data) {
  if (!valid_digest(digest) || !src || !dst || !src->host || !src->repo ||
      !dst->host || !dst->repo || strlen(src->repo) > 255 ||
      strlen(dst->repo) > 255 || strlen(src->host) > 255 ||
      strlen(dst->host) > 255 || (mount_from && strlen(mount_from) > 255))
    return THAW_EINVAL;
  /* dst credentials are the op's; the source uses the same ones only when
   * it is the same registry (a mirror of one host). */
  regop_t *op = regop_new(r, dst, cb, data);
  if (!op)
    return THAW_EINVAL;
  snprintf(op->digest, sizeof op->digest, "%s", digest);
  snprintf(op->srepo, sizeof op->srepo, "%s", src->repo);
  snprintf(op->drepo, sizeof op->drepo, "%s", dst->repo);
  snprintf(op->shost, sizeof op->shost, "%s", src->host);
  snprintf(op->dhost, sizeof op->dhost, "%s", dst->host);
  if (src->creds) {
    op->screds = *src->creds;
    op->has_screds = 1;
  }
  if (mount_from)
    snprintf(op->mount_from, sizeof op->mount_from, "%s", mount_from);
  op->size = size;
  op->progress = progress;
  char path[128];
  snprintf(path, sizeof path, "/blobs/%.71s", digest);
  int rc = regcall_init(&op->a, op, dst->host, dst->repo, "HEAD", path, 1,
                        NULL);
  op->a.done = copy_head_done;
  if (!rc)
    rc = regcall_go(&op->a);
  if (rc)
    regop_free_unstarted(op);
  return rc;
}
