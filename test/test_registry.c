/* test_registry.c - common/oci/registry against real docker-registry instances
 * (started by test_registry.sh): push a synthetic image into A with the
 * client, copy it to B (single manifest, index children first, 0-byte blob,
 * skip, cross-repo mount, a 50 MB blob with bounded RSS), faults from
 * lying_registry.py (wrong digest, 429, schema 1, redirect drops
 * Authorization) and a Basic-auth registry.
 *
 * usage: test_registry A B LIE BASIC BIGDIGEST BIGSIZE TOKEN|- (hosts as
 * host:port; BASIC expects thaw/s3cret; TOKEN is a Bearer registry behind
 * test/token_server.py where alice/secret may push private/ repositories) */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "check.h"
#include "error.h"
#include "registry.h"

static uv_loop_t loop;
static thaw_registry_t *reg;
static int observed;

typedef struct {
  int done;
  thaw_registry_result_t res;
  char *body;
  char digest[128], media[160], msg[256];
  long long progress;
} wait_t;

static void on_res(const thaw_registry_result_t *res, void *data) {
  wait_t *w = data;
  w->done = 1;
  w->res = *res;
  snprintf(w->digest, sizeof w->digest, "%s", res->digest);
  snprintf(w->media, sizeof w->media, "%s", res->media_type);
  snprintf(w->msg, sizeof w->msg, "%s", res->message);
  w->body = NULL;
  if (res->body) {
    w->body = malloc(res->body_len + 1);
    memcpy(w->body, res->body, res->body_len);
    w->body[res->body_len] = '\0';
  }
}

static void on_progress(long long done, void *data) {
  ((wait_t *)data)->progress = done;
}

static void observe(const char *host, long status, void *data) {
  (void)host;
  (void)status;
  (void)data;
  observed++;
}

/* Runs the loop until the op's callback ran; returns its err. */
static int run(int rc, wait_t *w) {
  if (rc) {
    fprintf(stderr, "start failed: %s\n", thaw_strerror(rc));
    return rc;
  }
  while (!w->done)
    uv_run(&loop, UV_RUN_ONCE);
  if (w->res.err)
    fprintf(stderr, "  -> %s: %s\n", thaw_err_name(w->res.err), w->msg);
  return w->res.err;
}

static void sha(const char *p, size_t n, char out[72]) {
  thaw_registry_digest(p, n, out);
}

static int put_blob(thaw_registry_target_t *t, const char *p, size_t n,
                    char dg[72]) {
  wait_t w = {0};
  sha(p, n, dg);
  return run(thaw_registry_blob_put(reg, t, dg, p, n, on_res, &w), &w);
}

static int put_manifest(thaw_registry_target_t *t, const char *ref,
                        const char *media, const char *m, char dg[72]) {
  wait_t w = {0};
  sha(m, strlen(m), dg);
  int rc = run(thaw_registry_manifest_put(reg, t, ref, media, m, strlen(m),
                                          on_res, &w), &w);
  CHECK(rc || strcmp(w.digest, dg) == 0);
  return rc;
}

static long vm_hwm_kib(void) {
  FILE *f = fopen("/proc/self/status", "r");
  char line[256];
  long v = -1;
  while (f && fgets(line, sizeof line, f))
    if (strncmp(line, "VmHWM:", 6) == 0)
      v = strtol(line + 6, NULL, 10);
  if (f)
    fclose(f);
  return v;
}

/* Copies manifest `ref` (bytes given) from src to dst as the controller
 * would: blobs first, then the manifest. */
static int copy_blob(thaw_registry_target_t *s, thaw_registry_target_t *d,
                     const char *dg, long long size, const char *mount,
                     wait_t *w) {
  memset(w, 0, sizeof *w);
  return run(thaw_registry_blob_copy(reg, s, d, dg, size, mount, on_progress,
                                     on_res, w), w);
}

static int get_manifest(thaw_registry_target_t *t, const char *ref, int head,
                        wait_t *w) {
  memset(w, 0, sizeof *w);
  return run(thaw_registry_manifest_get(reg, t, ref, head, on_res, w), w);
}

int main(int argc, char **argv) {
  if (argc != 8) {
    fprintf(stderr, "usage: test_registry A B LIE BASIC BIGDIGEST BIGSIZE "
                    "TOKEN|-\n");
    return 2;
  }
  const char *A = argv[1], *B = argv[2], *LIE = argv[3], *BASIC = argv[4];
  const char *bigdg = argv[5];
  long long bigsize = strtoll(argv[6], NULL, 10);
  char lie_local[64];
  snprintf(lie_local, sizeof lie_local, "localhost%s", strchr(LIE, ':'));
  const char *TOK = strcmp(argv[7], "-") ? argv[7] : NULL;
  const char *insecure[] = {A, B, LIE, BASIC, lie_local, TOK, NULL};
  thaw_http_t *http;
  uv_loop_init(&loop);
  CHECK(thaw_http_new(&loop, &http) == 0);
  thaw_registry_opts_t o = {.insecure = insecure, .observe = observe};
  CHECK(thaw_registry_new(http, &o, &reg) == 0);

  thaw_registry_target_t a = {A, "src/app", NULL}, b = {B, "dst/app", NULL};
  thaw_registry_target_t b2 = {B, "other/app", NULL};
  wait_t w;

  /* A synthetic image in A: config, a 0-byte layer, a 300 KiB layer. */
  static char layer[300 * 1024];
  for (size_t i = 0; i < sizeof layer; i++)
    layer[i] = (char)(i * 7 + i / 1000);
  const char *config = "{\"architecture\":\"amd64\",\"os\":\"linux\","
                       "\"rootfs\":{\"type\":\"layers\",\"diff_ids\":[]}}";
  char cdg[72], edg[72], ldg[72];
  CHECK(put_blob(&a, config, strlen(config), cdg) == 0);
  CHECK(put_blob(&a, "", 0, edg) == 0);
  CHECK(put_blob(&a, layer, sizeof layer, ldg) == 0);
  char m1[2048], m2[2048], idx[2048], m1dg[72], m2dg[72], idxdg[72];
  snprintf(m1, sizeof m1,
           "{\"schemaVersion\":2,\"mediaType\":\"application/vnd.oci.image."
           "manifest.v1+json\",\"config\":{\"mediaType\":\"application/vnd."
           "oci.image.config.v1+json\",\"digest\":\"%s\",\"size\":%zu},"
           "\"layers\":[{\"mediaType\":\"application/vnd.oci.image.layer.v1."
           "tar\",\"digest\":\"%s\",\"size\":0},{\"mediaType\":\"application/"
           "vnd.oci.image.layer.v1.tar\",\"digest\":\"%s\",\"size\":%zu}]}",
           cdg, strlen(config), edg, ldg, sizeof layer);
  snprintf(m2, sizeof m2,
           "{\"schemaVersion\":2,\"mediaType\":\"application/vnd.docker."
           "distribution.manifest.v2+json\",\"config\":{\"mediaType\":"
           "\"application/vnd.docker.container.image.v1+json\",\"digest\":"
           "\"%s\",\"size\":%zu},\"layers\":[{\"mediaType\":\"application/"
           "vnd.docker.image.rootfs.diff.tar.gzip\",\"digest\":\"%s\","
           "\"size\":%zu}]}",
           cdg, strlen(config), ldg, sizeof layer);
  CHECK(put_manifest(&a, "v1", "application/vnd.oci.image.manifest.v1+json",
                     m1, m1dg) == 0);
  CHECK(put_manifest(&a, "v2", "application/vnd.docker.distribution."
                     "manifest.v2+json", m2, m2dg) == 0);
  snprintf(idx, sizeof idx,
           "{\"schemaVersion\":2,\"mediaType\":\"application/vnd.oci.image."
           "index.v1+json\",\"manifests\":[{\"mediaType\":\"application/vnd."
           "oci.image.manifest.v1+json\",\"digest\":\"%s\",\"size\":%zu,"
           "\"platform\":{\"architecture\":\"amd64\",\"os\":\"linux\"}},{"
           "\"mediaType\":\"application/vnd.docker.distribution.manifest.v2+"
           "json\",\"digest\":\"%s\",\"size\":%zu,\"platform\":{"
           "\"architecture\":\"arm64\",\"os\":\"linux\"}}]}",
           m1dg, strlen(m1), m2dg, strlen(m2));
  CHECK(put_manifest(&a, "multi", "application/vnd.oci.image.index.v1+json",
                     idx, idxdg) == 0);

  /* HEAD and GET from A: exact bytes, type, digest; by digest verified. */
  CHECK(get_manifest(&a, "v1", 1, &w) == 0 && strcmp(w.digest, m1dg) == 0 &&
        w.res.size == (long long)strlen(m1));
  CHECK(get_manifest(&a, m2dg, 0, &w) == 0 && w.body &&
        strcmp(w.body, m2) == 0 && strstr(w.media, "docker") != NULL);
  free(w.body);
  CHECK(get_manifest(&a, "nope", 0, &w) == THAW_ENOTFOUND);

  /* Copy the index to B, children first; blobs by streamed copy. */
  const char *blobs[] = {cdg, edg, ldg};
  long long sizes[] = {(long long)strlen(config), 0, (long long)sizeof layer};
  for (int i = 0; i < 3; i++) {
    CHECK(copy_blob(&a, &b, blobs[i], sizes[i], NULL, &w) == 0);
    CHECK(!w.res.skipped && !w.res.mounted && w.res.size == sizes[i]);
    CHECK(w.progress == sizes[i]);
  }
  /* Present blobs are skipped. */
  CHECK(copy_blob(&a, &b, ldg, sizes[2], NULL, &w) == 0 && w.res.skipped);
  const char *kids[] = {m1dg, m2dg};
  for (int i = 0; i < 2; i++) {
    wait_t g, p = {0};
    CHECK(get_manifest(&a, kids[i], 0, &g) == 0);
    CHECK(run(thaw_registry_manifest_put(reg, &b, kids[i], g.media, g.body,
                                         g.res.body_len, on_res, &p), &p) == 0);
    CHECK(strcmp(p.digest, kids[i]) == 0);
    free(g.body);
  }
  {
    wait_t g, p = {0};
    CHECK(get_manifest(&a, "multi", 0, &g) == 0);
    CHECK(run(thaw_registry_manifest_put(reg, &b, "multi", g.media, g.body,
                                         g.res.body_len, on_res, &p), &p) == 0);
    free(g.body);
    CHECK(get_manifest(&b, "multi", 0, &g) == 0 && g.body &&
          strcmp(g.body, idx) == 0 && strcmp(g.digest, idxdg) == 0);
    free(g.body);
  }
  /* Blob bytes in B equal A's: HEAD size + the digest check of a copy back. */
  CHECK(run(thaw_registry_blob_head(reg, &b, ldg, on_res,
                                    (memset(&w, 0, sizeof w), &w)), &w) == 0 &&
        w.res.exists && w.res.size == (long long)sizeof layer);
  thaw_registry_target_t a_back = {A, "back/app", NULL};
  CHECK(copy_blob(&b, &a_back, ldg, sizes[2], NULL, &w) == 0 &&
        !w.res.skipped);

  /* Cross-repository mount within B. */
  CHECK(copy_blob(&a, &b2, ldg, sizes[2], "dst/app", &w) == 0 &&
        w.res.mounted);
  CHECK(copy_blob(&a, &b2, cdg, sizes[0], "no/such", &w) == 0 &&
        !w.res.mounted && w.res.size == sizes[0]); /* fell back to upload */

  /* Delete by digest. */
  {
    wait_t d = {0};
    CHECK(run(thaw_registry_manifest_delete(reg, &b2, m1dg, on_res, &d), &d)
          == THAW_ENOTFOUND);
    memset(&d, 0, sizeof d);
    CHECK(run(thaw_registry_manifest_delete(reg, &b, idxdg, on_res, &d), &d)
          == 0);
    CHECK(get_manifest(&b, idxdg, 1, &w) == THAW_ENOTFOUND);
  }

  /* 50 MB blob with bounded memory. */
  {
    FILE *cr = fopen("/proc/self/clear_refs", "w"); /* "5": reset VmHWM */
    if (cr) {
      fputs("5", cr);
      fclose(cr);
    }
    long before = vm_hwm_kib();
    CHECK(copy_blob(&a, &b, bigdg, bigsize, NULL, &w) == 0 &&
          w.res.size == bigsize && w.progress == bigsize);
    long growth = vm_hwm_kib() - before;
    fprintf(stderr, "50 MB copy: VmHWM grew %ld KiB\n", growth);
#ifndef __SANITIZE_ADDRESS__ /* ASan's quarantine keeps freed memory */
    CHECK(growth < 8 * 1024);
#endif
  }

  /* Faults. */
  thaw_registry_target_t lie = {LIE, "lie", NULL};
  const char *liedg = "sha256:2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae";
  CHECK(copy_blob(&lie, &b, liedg, -1, NULL, &w) == THAW_EDIGEST);
  CHECK(copy_blob(&lie, &b, liedg, 3, NULL, &w) == THAW_EDIGEST);
  memset(&w, 0, sizeof w);
  CHECK(run(thaw_registry_blob_head(reg, &b, liedg, on_res, &w), &w) == 0 &&
        !w.res.exists);
  CHECK(get_manifest(&lie, "latest", 0, &w) == THAW_EDIGEST);
  thaw_registry_target_t old = {LIE, "old", NULL}, busy = {LIE, "busy", NULL};
  CHECK(get_manifest(&old, "latest", 0, &w) == THAW_EPARSE);
  CHECK(get_manifest(&busy, "latest", 0, &w) == THAW_ETOOMANY &&
        w.res.retry_after == 7);
  /* Redirect to another host: Authorization dropped (else 400). */
  thaw_regauth_creds_t cr = {"thaw", "s3cret"};
  thaw_registry_target_t redir = {LIE, "auth", &cr};
  const char *rdg = "sha256:800d0245920aaf9f2b6e118c1bbb7b983b5650c6ad280028c7869b276da43045";
  CHECK(copy_blob(&redir, &b, rdg, 15, NULL, &w) == 0 && w.res.size == 15);
  redir.creds = NULL;
  CHECK(copy_blob(&redir, &b2, rdg, 15, NULL, &w) == THAW_EFORBIDDEN &&
        w.res.anonymous_refused);

  /* Basic-auth registry: anonymous refused; with credentials it works. */
  thaw_registry_target_t ba = {BASIC, "priv/app", NULL};
  CHECK(get_manifest(&ba, "v1", 0, &w) == THAW_EFORBIDDEN &&
        w.res.anonymous_refused);
  ba.creds = &cr;
  char x[72];
  CHECK(put_blob(&ba, config, strlen(config), x) == 0);
  CHECK(copy_blob(&a, &ba, ldg, sizes[2], NULL, &w) == 0);
  CHECK(copy_blob(&a, &ba, edg, 0, NULL, &w) == 0);
  CHECK(put_manifest(&ba, "v1", "application/vnd.oci.image.manifest.v1+json",
                     m1, x) == 0);
  CHECK(get_manifest(&ba, "v1", 0, &w) == 0 && w.body &&
        strcmp(w.body, m1) == 0);
  free(w.body);
  thaw_regauth_creds_t bad = {"thaw", "wrong"};
  ba.creds = &bad;
  CHECK(get_manifest(&ba, "v1", 0, &w) == THAW_EFORBIDDEN);

  /* Bearer flow against the token server. */
  if (TOK) {
    thaw_regauth_creds_t alice = {"alice", "secret"};
    thaw_registry_target_t pub = {TOK, "public/app", NULL};
    thaw_registry_target_t priv = {TOK, "private/app", NULL};
    /* Anonymous pull of public/ repos gets a token: the answer is a plain 404. */
    CHECK(get_manifest(&pub, "v1", 0, &w) == THAW_ENOTFOUND &&
          !w.res.anonymous_refused);
    CHECK(get_manifest(&priv, "v1", 0, &w) == THAW_EFORBIDDEN &&
          w.res.anonymous_refused);
    priv.creds = &alice;
    CHECK(copy_blob(&a, &priv, cdg, sizes[0], NULL, &w) == 0);
    CHECK(copy_blob(&a, &priv, edg, 0, NULL, &w) == 0);
    CHECK(copy_blob(&a, &priv, ldg, sizes[2], NULL, &w) == 0 &&
          w.res.size == sizes[2]);
    CHECK(put_manifest(&priv, "v1",
                       "application/vnd.oci.image.manifest.v1+json", m1,
                       x) == 0);
    CHECK(get_manifest(&priv, "v1", 0, &w) == 0 && w.body &&
          strcmp(w.body, m1) == 0 && strcmp(w.digest, m1dg) == 0);
    free(w.body);
    /* Copy out of the Bearer registry (the token is the source's). */
    thaw_registry_target_t b3 = {B, "from/tok", NULL};
    CHECK(copy_blob(&priv, &b3, ldg, sizes[2], NULL, &w) == 0 &&
          !w.res.skipped);
    priv.creds = NULL;
    CHECK(get_manifest(&priv, "v1", 0, &w) == THAW_EFORBIDDEN &&
          w.res.anonymous_refused);
  } else {
    fprintf(stderr, "no token server: Bearer flow not tested\n");
  }

  /* Argument errors never call back; free cancels what runs. */
  CHECK(thaw_registry_blob_copy(reg, &a, &b, "sha256:xyz", 1, NULL, NULL,
                                on_res, &w) == THAW_EINVAL);
  CHECK(thaw_registry_manifest_get(reg, &a, "bad ref/x", 0, on_res, &w) ==
        THAW_EINVAL);
  memset(&w, 0, sizeof w);
  CHECK(thaw_registry_blob_copy(reg, &a, &b2, bigdg, bigsize, NULL, NULL,
                                on_res, &w) == 0);
  CHECK(observed > 20);
  thaw_registry_free(reg);
  CHECK(w.done && w.res.err == THAW_ECANCELED);
  thaw_http_free(http);
  while (uv_run(&loop, UV_RUN_DEFAULT))
    ;
  CHECK(uv_loop_close(&loop) == 0);
  if (!failures)
    printf("registry: ok\n");
  return failures != 0;
}
