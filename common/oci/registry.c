/* registry.c - the OCI distribution client: the client, the lifetime of an
 * operation, and the manifest operations. Auth and redirects of each
 * exchange are in regcall.c, blobs in regblob.c. */
#include "registry.h"

#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "error.h"
#include "regcall.h"

static const char accept_hdr[] =
    "Accept: application/vnd.oci.image.manifest.v1+json, "
    "application/vnd.oci.image.index.v1+json, "
    "application/vnd.docker.distribution.manifest.v2+json, "
    "application/vnd.docker.distribution.manifest.list.v2+json";

static const char *const media_ok[] = {
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.distribution.manifest.list.v2+json", NULL};

int thaw_registry_digest(const void *p, size_t n,
                         char out[THAW_REGISTRY_DIGEST_MAX]) {
  unsigned char md[32];
  unsigned int len = 0;
  if (EVP_Digest(p, n, md, &len, EVP_sha256(), NULL) != 1)
    return THAW_EIO;
  memcpy(out, "sha256:", 7);
  for (int i = 0; i < 32; i++)
    snprintf(out + 7 + 2 * i, 3, "%02x", md[i]);
  return 0;
}

/* ---- client ---- */

int thaw_registry_new(thaw_http_t *http, const thaw_registry_opts_t *o,
                      thaw_registry_t **out) {
  thaw_registry_opts_t zero = {0};
  if (!o)
    o = &zero;
  thaw_registry_t *r = calloc(1, sizeof *r);
  if (!r)
    return THAW_ENOMEM;
  r->http = http;
  r->timeout_ms = o->timeout_ms ? o->timeout_ms : 60000;
  r->low_speed_secs = o->low_speed_secs ? o->low_speed_secs : 60;
  r->observe = o->observe;
  r->observe_data = o->observe_data;
  r->mint = o->mint;
  r->mint_data = o->mint_data;
  size_t n = 0;
  while (o->insecure && o->insecure[n])
    n++;
  r->insecure = calloc(n + 1, sizeof *r->insecure);
  if (!r->insecure)
    goto fail;
  for (size_t i = 0; i < n; i++)
    if (!(r->insecure[i] = strdup(o->insecure[i])))
      goto fail;
  if (o->ca_file && !(r->ca_file = strdup(o->ca_file)))
    goto fail;
  if (thaw_regauth_cache_new(0, o->clock, o->clock_data, &r->tokens))
    goto fail;
  *out = r;
  return 0;
fail:
  thaw_registry_free(r);
  return THAW_ENOMEM;
}

/* Cancels one request of op: its done may finish and free op, or go on
 * to the op's next request, which the caller's next round cancels. */
static void cancel_one(regop_t *op) {
  regcall_t *c = op->a.req || op->a.tok_req   ? &op->a
                 : op->b.req || op->b.tok_req ? &op->b
                 : op->del.req || op->del.tok_req ? &op->del
                                                  : NULL;
  if (c)
    regcall_cancel(c);
  else
    regop_finish(op, THAW_ECANCELED);
}

void thaw_registry_cancel_if(thaw_registry_t *r,
                             int (*match)(void *data, void *ctx), void *ctx) {
  for (;;) {
    regop_t *op = r->ops;
    while (op && !match(op->data, ctx))
      op = op->next;
    if (!op)
      return;
    cancel_one(op);
  }
}

void thaw_registry_free(thaw_registry_t *r) {
  if (!r)
    return;
  r->closing = 1;
  while (r->ops)
    cancel_one(r->ops);
  for (char **p = r->insecure; p && *p; p++)
    free(*p);
  free(r->insecure);
  free(r->ca_file);
  thaw_regauth_cache_free(r->tokens);
  free(r);
}

/* ---- operations ---- */

regop_t *regop_new(thaw_registry_t *r, const thaw_registry_target_t *t,
                   thaw_registry_cb cb, void *data) {
  if (!r || !t || !t->host || !t->repo || !cb || r->closing)
    return NULL;
  regop_t *op = calloc(1, sizeof *op);
  if (!op)
    return NULL;
  op->r = r;
  op->cb = cb;
  op->data = data;
  if (t->creds) {
    op->creds = *t->creds;
    op->has_creds = 1;
  }
  op->next = r->ops;
  if (r->ops)
    r->ops->prev = op;
  r->ops = op;
  return op;
}

static void op_free(regop_t *op) {
  thaw_registry_t *r = op->r;
  if (op->prev)
    op->prev->next = op->next;
  else if (r->ops == op)
    r->ops = op->next;
  if (op->next)
    op->next->prev = op->prev;
  regcall_clear(&op->a);
  regcall_clear(&op->b);
  regcall_clear(&op->del);
  OPENSSL_cleanse(&op->creds, sizeof op->creds);
  OPENSSL_cleanse(&op->screds, sizeof op->screds);
  EVP_MD_CTX_free(op->md);
  free(op->ring);
  free(op->copy);
  free(op);
}

void regop_free_unstarted(regop_t *op) { op_free(op); }

void regop_finish(regop_t *op, int err) {
  if (op->finished)
    return;
  op->finished = 1;
  op->res.err = err;
  if (!op->msg[0])
    snprintf(op->msg, sizeof op->msg, "%s", err ? thaw_strerror(err) : "");
  op->res.message = op->msg;
  op->res.media_type = op->media;
  op->res.digest = op->digest;
  op->cb(&op->res, op->data);
  op_free(op);
}

/* Fills err/status/message from a non-success exchange; returns the err. */
int regop_fail_status(regop_t *op, const thaw_http_result_t *res,
                      const char *what) {
  int err = res->err ? res->err : regcall_status_err(res->status);
  if (res->status)
    op->res.status = res->status;
  if (!op->msg[0]) {
    if (res->err)
      snprintf(op->msg, sizeof op->msg, "%s: %s (%s)", what,
               thaw_strerror(res->err), res->message);
    else
      snprintf(op->msg, sizeof op->msg, "%s: HTTP %ld", what, res->status);
  }
  return err;
}

/* ---- manifests ---- */

static void manifest_done(regcall_t *c, const thaw_http_result_t *res) {
  regop_t *op = c->op;
  if (res->err || res->status < 200 || res->status >= 300) {
    regop_finish(op, regop_fail_status(op, res, "manifest"));
    return;
  }
  op->res.status = res->status;
  const char *dg = c->cur ? thaw_http_header(c->cur, "Docker-Content-Digest")
                          : NULL;
  const char *ct = c->cur ? thaw_http_header(c->cur, "Content-Type") : NULL;
  if (dg)
    snprintf(op->digest, sizeof op->digest, "%s", dg);
  if (strcmp(c->method, "GET") && strcmp(c->method, "HEAD")) {
    if (strncmp(op->media, "Content-Type: ", 14) == 0)
      memmove(op->media, op->media + 14, strlen(op->media + 14) + 1);
    regop_finish(op, 0); /* PUT, DELETE */
    return;
  }
  if (ct)
    snprintf(op->media, sizeof op->media, "%.*s", (int)strcspn(ct, "; "),
             ct);
  int known = 0;
  for (int i = 0; media_ok[i]; i++)
    known |= strcmp(op->media, media_ok[i]) == 0;
  if (!known) {
    snprintf(op->msg, sizeof op->msg, "unsupported manifest media type '%.160s'%s",
             op->media, strstr(op->media, "manifest.v1") ? " (schema 1)" : "");
    regop_finish(op, THAW_EPARSE);
    return;
  }
  if (strcmp(c->method, "HEAD") == 0) {
    const char *cl = thaw_http_header(c->cur, "Content-Length");
    op->res.size = cl ? strtoll(cl, NULL, 10) : -1;
    regop_finish(op, 0);
    return;
  }
  char sum[72];
  if (thaw_registry_digest(res->body, res->body_len, sum)) {
    regop_finish(op, THAW_EIO);
    return;
  }
  int by_digest = strncmp(op->ref, "sha256:", 7) == 0;
  if ((by_digest && strcmp(sum, op->ref) != 0) ||
      (dg && strncmp(dg, "sha256:", 7) == 0 && strcmp(dg, sum) != 0)) {
    snprintf(op->msg, sizeof op->msg, "manifest bytes hash to %s", sum);
    regop_finish(op, THAW_EDIGEST);
    return;
  }
  if (!dg)
    snprintf(op->digest, sizeof op->digest, "%s", sum);
  op->res.body = res->body;
  op->res.body_len = res->body_len;
  op->res.size = (long long)res->body_len;
  regop_finish(op, 0);
}

static int valid_ref(const char *ref) {
  size_t n = ref ? strlen(ref) : 0;
  if (n == 0 || n > 200)
    return 0;
  for (const char *p = ref; *p; p++)
    if (!(*p == ':' || *p == '.' || *p == '_' || *p == '-' ||
          (*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'z') ||
          (*p >= 'A' && *p <= 'Z')))
      return 0;
  return 1;
}

static int manifest_op(thaw_registry_t *r, const thaw_registry_target_t *t,
                       const char *method, const char *ref, int push,
                       const char *media, const void *bytes, size_t len,
                       thaw_registry_cb cb, void *data) {
  if (!valid_ref(ref) || (media && strlen(media) > 200) ||
      len > THAW_REGISTRY_MANIFEST_MAX)
    return len > THAW_REGISTRY_MANIFEST_MAX ? THAW_E2BIG : THAW_EINVAL;
  regop_t *op = regop_new(r, t, cb, data);
  if (!op)
    return r && !r->closing && t && cb ? THAW_ENOMEM : THAW_EINVAL;
  snprintf(op->ref, sizeof op->ref, "%s", ref);
  char path[THAW_REGAUTH_FIELD_MAX + 16];
  snprintf(path, sizeof path, "/manifests/%s", ref);
  regcall_t *c = &op->a;
  int rc = regcall_init(c, op, t->host, t->repo, method, path, push, NULL);
  if (!rc && media) {
    snprintf(op->media, sizeof op->media, "Content-Type: %s", media);
    c->hdr[c->nhdr++] = op->media;
    if (len && !(op->copy = malloc(len)))
      rc = THAW_ENOMEM;
    else if (len)
      memcpy(op->copy, bytes, len);
    c->body = op->copy ? op->copy : "";
    c->body_len = len;
  } else {
    c->hdr[c->nhdr++] = accept_hdr;
  }
  c->max_body = THAW_REGISTRY_MANIFEST_MAX;
  c->done = manifest_done;
  if (!rc)
    rc = regcall_go(c);
  if (rc) {
    regop_free_unstarted(op);
    return rc;
  }
  return 0;
}

int thaw_registry_manifest_get(thaw_registry_t *r,
                               const thaw_registry_target_t *t,
                               const char *ref, int head,
                               thaw_registry_cb cb, void *data) {
  return manifest_op(r, t, head ? "HEAD" : "GET", ref, 0, NULL, NULL, 0, cb,
                     data);
}

int thaw_registry_manifest_put(thaw_registry_t *r,
                               const thaw_registry_target_t *t,
                               const char *ref, const char *media_type,
                               const void *bytes, size_t len,
                               thaw_registry_cb cb, void *data) {
  if (!media_type || (!bytes && len))
    return THAW_EINVAL;
  return manifest_op(r, t, "PUT", ref, 1, media_type, bytes, len, cb, data);
}

int thaw_registry_manifest_delete(thaw_registry_t *r,
                                  const thaw_registry_target_t *t,
                                  const char *digest, thaw_registry_cb cb,
                                  void *data) {
  if (!digest || strncmp(digest, "sha", 3))
    return THAW_EINVAL;
  return manifest_op(r, t, "DELETE", digest, 1, NULL, NULL, 0, cb, data);
}
