/* test_index.c - the webhook's index against the API-server emulator:
 * lookups follow creates, status changes, deletes and label changes, and
 * still equal the server's state after dropped watches and compaction.
 * Run under test/with-emulator.sh. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "error.h"
#include "imgref.h"
#include "index.h"
#include "informer_harness.h"

static harness_t h;
static thaw_index_t *ix;

/* observer calls */
static int seen;
static char last_seen[600];

static void on_image(const char *normalized, void *data) {
  (void)data;
  seen++;
  snprintf(last_seen, sizeof(last_seen), "%s", normalized);
}

/* --- setup helpers ------------------------------------------------------ */

static void make_ns(const char *name, const char *caching, const char *priv) {
  cJSON *o = cJSON_CreateObject();
  cJSON_AddStringToObject(o, "apiVersion", "v1");
  cJSON_AddStringToObject(o, "kind", "Namespace");
  cJSON *meta = cJSON_AddObjectToObject(o, "metadata");
  cJSON_AddStringToObject(meta, "name", name);
  cJSON *labels = cJSON_AddObjectToObject(meta, "labels");
  if (caching)
    cJSON_AddStringToObject(labels, "thaw.dev/caching", caching);
  if (priv)
    cJSON_AddStringToObject(labels, "thaw.dev/cache-private", priv);
  CHECK(sync_create(&h, &thaw_kube_namespaces, NULL, o, NULL) == 0);
  cJSON_Delete(o);
}

static void make_ci(const char *name, const char *image) {
  cJSON *o = cJSON_CreateObject();
  cJSON_AddStringToObject(o, "apiVersion", "thaw.dev/v1alpha1");
  cJSON_AddStringToObject(o, "kind", "CachedImage");
  cJSON_AddStringToObject(cJSON_AddObjectToObject(o, "metadata"), "name",
                          name);
  cJSON_AddStringToObject(cJSON_AddObjectToObject(o, "spec"), "image", image);
  int rc = sync_create(&h, &thaw_kube_cachedimages, NULL, o, NULL);
  if (rc != 0)
    fprintf(stderr, "create %s: %s\n", name, thaw_err_name(rc));
  CHECK(rc == 0);
  cJSON_Delete(o);
}

typedef struct {
  int done, err;
} res_t;

static void on_res(const thaw_kube_result_t *r, void *data) {
  res_t *s = data;
  s->done = 1;
  s->err = r->err;
  if (r->err)
    fprintf(stderr, "request: %s %s\n", thaw_err_name(r->err), r->message);
}

static int res_done(void *arg) { return ((res_t *)arg)->done; }

#define DG_A "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
#define DG_B "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

/* Merge-patches status (the CRD has the status subresource, so a create or
 * update of the main resource cannot set it). priv < 0 leaves it out;
 * digest NULL removes status.digest, "" leaves it as it is. */
static void set_status_digest(const char *name, const char *phase, int priv,
                              const char *digest) {
  cJSON *p = cJSON_CreateObject();
  cJSON *st = cJSON_AddObjectToObject(p, "status");
  cJSON_AddStringToObject(st, "phase", phase);
  if (priv >= 0)
    cJSON_AddBoolToObject(st, "private", priv);
  if (digest == NULL)
    cJSON_AddNullToObject(st, "digest");
  else if (*digest)
    cJSON_AddStringToObject(st, "digest", digest);
  res_t s = {0};
  thaw_kube_opts_t o = {.name = name, .subresource = "status"};
  CHECK(thaw_kube_merge_patch(h.kube, &thaw_kube_cachedimages, &o, p, on_res,
                              &s) == 0);
  CHECK(run_until(&h, res_done, &s, 30000));
  CHECK(s.err == 0);
  cJSON_Delete(p);
}

/* A Ready status carries DG_A, as the controller's would. */
static void set_status(const char *name, const char *phase, int priv) {
  set_status_digest(name, phase, priv,
                    strcmp(phase, "Ready") == 0 ? DG_A : "");
}

static void patch_ns_labels(const char *ns, const char *json_labels) {
  char buf[512];
  snprintf(buf, sizeof(buf), "{\"metadata\":{\"labels\":%s}}", json_labels);
  cJSON *p = cJSON_Parse(buf);
  CHECK(sync_merge_patch(&h, &thaw_kube_namespaces, NULL, ns, p) == 0);
  cJSON_Delete(p);
}

/* --- waits -------------------------------------------------------------- */

typedef struct {
  const char *key;
  int want;
} want_t;

static int state_is(void *arg) {
  want_t *w = arg;
  return (int)thaw_index_image_state(w->key, NULL, ix) == w->want;
}

static int flags_are(void *arg) {
  want_t *w = arg;
  return thaw_index_namespace_flags(w->key, ix) == w->want;
}

#define WAIT_STATE(img, st)                                                    \
  do {                                                                         \
    want_t w_ = {(img), (st)};                                                 \
    if (!run_until(&h, state_is, &w_, 20000)) {                                \
      fprintf(stderr, "state of %s is %d, want %d\n", (img),                   \
              (int)thaw_index_image_state((img), NULL, ix), (int)(st));              \
      failures++;                                                         \
    }                                                                          \
  } while (0)

#define WAIT_FLAGS(ns, f)                                                      \
  do {                                                                         \
    want_t w_ = {(ns), (f)};                                                   \
    if (!run_until(&h, flags_are, &w_, 20000)) {                               \
      fprintf(stderr, "flags of %s are %d, want %d\n", (ns),                   \
              thaw_index_namespace_flags((ns), ix), (int)(f));                 \
      failures++;                                                         \
    }                                                                          \
  } while (0)

static int synced(void *arg) {
  (void)arg;
  return thaw_index_synced(ix);
}

/* --- comparison with the server ----------------------------------------- */

/* Recomputes every image's state from the server's list and compares it
 * with the index; returns the number of differences (printed if verbose). */
static int compare_with_server(int verbose) {
  cJSON *items = list_all(&h, &thaw_kube_cachedimages, NULL, NULL), *it;
  int bad = 0;
  size_t parsable = 0;
  cJSON_ArrayForEach(it, items) {
    const char *image = cJSON_GetStringValue(cJSON_GetObjectItem(
        cJSON_GetObjectItem(it, "spec"), "image"));
    thaw_imgref_t ref;
    if (image == NULL || thaw_imgref_parse(image, strlen(image), &ref) != 0)
      continue;
    parsable++;
    int want = THAW_IMAGE_PRESENT;
    const cJSON *jt;
    cJSON_ArrayForEach(jt, items) { /* every object naming the same image */
      const char *im2 = cJSON_GetStringValue(cJSON_GetObjectItem(
          cJSON_GetObjectItem(jt, "spec"), "image"));
      thaw_imgref_t r2;
      if (im2 == NULL || thaw_imgref_parse(im2, strlen(im2), &r2) != 0 ||
          strcmp(r2.str, ref.str) != 0)
        continue;
      const cJSON *st = cJSON_GetObjectItem(jt, "status");
      const char *phase =
          cJSON_GetStringValue(cJSON_GetObjectItem(st, "phase"));
      const char *dg = cJSON_GetStringValue(cJSON_GetObjectItem(st, "digest"));
      thaw_imgref_t pin;
      char pinned[600];
      snprintf(pinned, sizeof pinned, "x@%s", dg ? dg : "");
      if (phase && strcmp(phase, "Ready") == 0 && dg &&
          strncmp(dg, "sha256:", 7) == 0 &&
          thaw_imgref_parse(pinned, strlen(pinned), &pin) == 0) {
        int s = cJSON_IsTrue(cJSON_GetObjectItem(st, "private"))
                    ? THAW_IMAGE_READY_PRIVATE
                    : THAW_IMAGE_READY;
        if (s > want)
          want = s;
      }
    }
    int got = (int)thaw_index_image_state(ref.str, NULL, ix);
    if (got != want) {
      if (verbose)
        fprintf(stderr, "  %s: index %d, server %d\n", ref.str, got, want);
      bad++;
    }
  }
  if (thaw_index_images(ix) != parsable) {
    if (verbose)
      fprintf(stderr, "  index holds %zu objects, server %zu\n",
            thaw_index_images(ix), parsable);
    bad++;
  }
  cJSON_Delete(items);
  return bad;
}

static int matches_server(void *arg) {
  (void)arg;
  return compare_with_server(0) == 0;
}

/* --- tests -------------------------------------------------------------- */

static void test_initial_sync(void) {
  make_ns("ix-plain", NULL, NULL);
  make_ns("ix-out", "disabled", NULL);
  make_ns("ix-priv", NULL, "true");
  make_ns("ix-both", "disabled", "true");
  make_ns("ix-other", "enabled", "yes"); /* values that mean nothing */
  make_ci("nginx-short", "nginx");      /* not normalised */
  make_ci("redis", "docker.io/library/redis:7");
  make_ci("secret", "quay.io/org/secret:1");
  make_ci("bad", "UPPER/Case:x");       /* unparsable: left out */
  set_status("redis", "Ready", -1);
  set_status("secret", "Ready", 1);

  CHECK(!thaw_index_synced(ix));
  CHECK(thaw_index_image_state("docker.io/library/redis:7", NULL, ix) ==
        THAW_IMAGE_ABSENT);
  CHECK(thaw_index_start(ix) == 0);
  CHECK(thaw_index_start(ix) == THAW_EINVAL);
  CHECK(run_until(&h, synced, NULL, 20000));

  CHECK(thaw_index_namespace_flags("ix-plain", ix) == 0);
  CHECK(thaw_index_namespace_flags("ix-out", ix) == THAW_NS_OPTED_OUT);
  CHECK(thaw_index_namespace_flags("ix-priv", ix) == THAW_NS_CACHE_PRIVATE);
  CHECK(thaw_index_namespace_flags("ix-both", ix) ==
        (THAW_NS_OPTED_OUT | THAW_NS_CACHE_PRIVATE));
  CHECK(thaw_index_namespace_flags("ix-other", ix) == 0);
  CHECK(thaw_index_namespace_flags("no-such-ns", ix) == 0);
  CHECK(thaw_index_namespace_flags(NULL, ix) == 0);

  CHECK(thaw_index_image_state("docker.io/library/nginx:latest", NULL, ix) ==
        THAW_IMAGE_PRESENT);
  CHECK(thaw_index_image_state("nginx", NULL, ix) == THAW_IMAGE_ABSENT);
  CHECK(thaw_index_image_state("docker.io/library/redis:7", NULL, ix) ==
        THAW_IMAGE_READY);
  CHECK(thaw_index_image_state("quay.io/org/secret:1", NULL, ix) ==
        THAW_IMAGE_READY_PRIVATE);
  CHECK(thaw_index_image_state("docker.io/library/redis:8", NULL, ix) ==
        THAW_IMAGE_ABSENT);
  CHECK(thaw_index_image_state("", NULL, ix) == THAW_IMAGE_ABSENT);
  CHECK(thaw_index_images(ix) == 3);
  CHECK(seen == 3); /* the observer saw each image enter */
}

static void test_phases(void) {
  const char *img = "ghcr.io/acme/app:2.0";
  int before = seen;
  make_ci("app", img);
  WAIT_STATE(img, THAW_IMAGE_PRESENT);
  CHECK(seen == before + 1 && strcmp(last_seen, img) == 0);
  set_status("app", "Warming", -1);
  set_status("app", "Ready", -1);
  WAIT_STATE(img, THAW_IMAGE_READY);
  set_status("app", "Ready", 1);
  WAIT_STATE(img, THAW_IMAGE_READY_PRIVATE);
  set_status("app", "Failed", 0);
  WAIT_STATE(img, THAW_IMAGE_PRESENT);
  set_status("app", "Ready", 0);
  WAIT_STATE(img, THAW_IMAGE_READY);
  CHECK(seen == before + 1); /* status changes do not re-enter */
  CHECK(sync_delete(&h, &thaw_kube_cachedimages, NULL, "app") == 0);
  WAIT_STATE(img, THAW_IMAGE_ABSENT);
  CHECK(thaw_index_images(ix) == 3);
}

static void test_same_image_twice(void) {
  const char *img = "registry.example.com:5000/team/svc:1";
  make_ci("svc-a", img);
  make_ci("svc-b", "Registry.Example.COM:5000/team/svc:1"); /* same, normalised */
  WAIT_STATE(img, THAW_IMAGE_PRESENT);
  set_status("svc-b", "Ready", -1);
  WAIT_STATE(img, THAW_IMAGE_READY); /* the best state wins */
  set_status("svc-a", "Pending", -1);
  run_until(&h, NULL, NULL, 300);
  CHECK(thaw_index_image_state(img, NULL, ix) == THAW_IMAGE_READY);
  CHECK(sync_delete(&h, &thaw_kube_cachedimages, NULL, "svc-b") == 0);
  WAIT_STATE(img, THAW_IMAGE_PRESENT); /* svc-a still names it */
  set_status("svc-a", "Ready", -1);
  WAIT_STATE(img, THAW_IMAGE_READY);
  CHECK(sync_delete(&h, &thaw_kube_cachedimages, NULL, "svc-a") == 0);
  WAIT_STATE(img, THAW_IMAGE_ABSENT);

  /* spec.image changed in place: the old image leaves, the new one enters */
  make_ci("moving", "docker.io/acme/one:1");
  WAIT_STATE("docker.io/acme/one:1", THAW_IMAGE_PRESENT);
  cJSON *p = cJSON_Parse("{\"spec\":{\"image\":\"acme/two:2\"}}");
  CHECK(sync_merge_patch(&h, &thaw_kube_cachedimages, NULL, "moving", p) == 0);
  cJSON_Delete(p);
  WAIT_STATE("docker.io/acme/two:2", THAW_IMAGE_PRESENT);
  CHECK(thaw_index_image_state("docker.io/acme/one:1", NULL, ix) ==
        THAW_IMAGE_ABSENT);
  /* ... and to something unparsable: out of the index */
  p = cJSON_Parse("{\"spec\":{\"image\":\"Bad/Name\"}}");
  CHECK(sync_merge_patch(&h, &thaw_kube_cachedimages, NULL, "moving", p) == 0);
  cJSON_Delete(p);
  WAIT_STATE("docker.io/acme/two:2", THAW_IMAGE_ABSENT);
}

static int digest_is(void *arg) {
  want_t *w = arg;
  char d[THAW_ADMIT_DIGEST_SIZE];
  thaw_index_image_state(w->key, d, ix);
  return strcmp(d, w->want ? DG_B : DG_A) == 0;
}

/* The digest a rewrite pins: only a Ready object with a valid
 * status.digest makes the image Ready, the newest digest wins, and two
 * objects of one image with different digests keep the right one. */
static void test_digests(void) {
  const char *img = "docker.io/acme/pinned:1";
  char d[THAW_ADMIT_DIGEST_SIZE] = "junk";
  make_ci("pin-a", img);
  WAIT_STATE(img, THAW_IMAGE_PRESENT);
  CHECK(thaw_index_image_state(img, d, ix) == THAW_IMAGE_PRESENT &&
        d[0] == '\0');
  set_status_digest("pin-a", "Ready", -1, NULL); /* Ready, no digest */
  run_until(&h, NULL, NULL, 300);
  CHECK(thaw_index_image_state(img, d, ix) == THAW_IMAGE_PRESENT);
  /* what the CRD's pattern lets through but the index refuses: too short
   * for sha256, and algorithms thaw's warm never writes */
  /* sha512: 128 hex digits */
  static const char sha512[] =
      "sha512:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
      "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
  static const char *const bad[] = {
      "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
      "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
      sha512, "md5:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    set_status_digest("pin-a", "Ready", -1, bad[i]);
    run_until(&h, NULL, NULL, 200);
    CHECK(thaw_index_image_state(img, d, ix) == THAW_IMAGE_PRESENT);
  }
  set_status_digest("pin-a", "Ready", -1, DG_A);
  WAIT_STATE(img, THAW_IMAGE_READY);
  CHECK(thaw_index_image_state(img, d, ix) == THAW_IMAGE_READY &&
        strcmp(d, DG_A) == 0);
  /* a refresh moves it */
  set_status_digest("pin-a", "Ready", -1, DG_B);
  want_t wb = {img, 1}, wa = {img, 0};
  CHECK(run_until(&h, digest_is, &wb, 20000));
  /* a second object of the same image, Ready with the older digest: the
   * newest delivery wins; when it goes, the other's is served */
  make_ci("pin-b", img);
  set_status_digest("pin-b", "Ready", 1, DG_A);
  WAIT_STATE(img, THAW_IMAGE_READY_PRIVATE);
  CHECK(run_until(&h, digest_is, &wa, 20000));
  CHECK(sync_delete(&h, &thaw_kube_cachedimages, NULL, "pin-a") == 0);
  WAIT_STATE(img, THAW_IMAGE_READY_PRIVATE);
  CHECK(run_until(&h, digest_is, &wa, 20000));
  /* the same digest on both: the one left keeps it */
  make_ci("pin-a", img);
  set_status_digest("pin-a", "Ready", 0, DG_A);
  run_until(&h, NULL, NULL, 300);
  CHECK(sync_delete(&h, &thaw_kube_cachedimages, NULL, "pin-b") == 0);
  WAIT_STATE(img, THAW_IMAGE_READY);
  CHECK(run_until(&h, digest_is, &wa, 20000));
  /* Expiring: no longer Ready, no digest */
  set_status_digest("pin-a", "Expiring", -1, "");
  WAIT_STATE(img, THAW_IMAGE_PRESENT);
  CHECK(thaw_index_image_state(img, d, ix) == THAW_IMAGE_PRESENT &&
        d[0] == '\0');
  CHECK(sync_delete(&h, &thaw_kube_cachedimages, NULL, "pin-a") == 0);
  WAIT_STATE(img, THAW_IMAGE_ABSENT);
}

static void test_namespace_labels(void) {
  patch_ns_labels("ix-plain", "{\"thaw.dev/caching\":\"disabled\"}");
  WAIT_FLAGS("ix-plain", THAW_NS_OPTED_OUT);
  patch_ns_labels("ix-plain", "{\"thaw.dev/caching\":null,"
                              "\"thaw.dev/cache-private\":\"true\"}");
  WAIT_FLAGS("ix-plain", THAW_NS_CACHE_PRIVATE);
  patch_ns_labels("ix-plain", "{\"thaw.dev/cache-private\":\"false\"}");
  WAIT_FLAGS("ix-plain", 0);
  make_ns("ix-late", "disabled", NULL);
  WAIT_FLAGS("ix-late", THAW_NS_OPTED_OUT);
  CHECK(sync_delete(&h, &thaw_kube_namespaces, NULL, "ix-late") == 0);
  WAIT_FLAGS("ix-late", 0);
}

/* Changes made while the watches are down (and across a compaction with a
 * watch-cache restart, which forces a re-list) all reach the index. */
static void test_drops_and_compaction(void) {
  char name[64], image[128];
  for (int round = 0; round < 3; round++) {
    CHECK(emu_post(&h, "/_emulator/drop-watches", NULL, NULL) == 200);
    for (int i = 0; i < 10; i++) {
      snprintf(name, sizeof(name), "drop-%d-%d", round, i);
      snprintf(image, sizeof(image), "docker.io/drop/img%d:%d", i % 4, round);
      make_ci(name, image);
      if (i % 3 == 0)
        set_status(name, "Ready", i % 2);
    }
    if (round > 0) { /* delete some of the previous round's */
      for (int i = 0; i < 10; i += 2) {
        snprintf(name, sizeof(name), "drop-%d-%d", round - 1, i);
        CHECK(sync_delete(&h, &thaw_kube_cachedimages, NULL, name) == 0);
      }
    }
    if (round == 1)
      CHECK(emu_post(&h, "/_emulator/compact", "{\"restartWatchCache\":true}", NULL) == 200);
    CHECK(emu_post(&h, "/_emulator/drop-watches", NULL, NULL) == 200);
  }
  CHECK(emu_post(&h, "/_emulator/compact", "{\"restartWatchCache\":true}", NULL) == 200);
  set_status("redis", "Failed", -1); /* one more change after compaction */
  if (!run_until(&h, matches_server, NULL, 60000)) {
    fprintf(stderr, "index differs from the server:\n");
    CHECK(compare_with_server(1) == 0);
  }
  CHECK(thaw_index_image_state("docker.io/library/redis:7", NULL, ix) ==
        THAW_IMAGE_PRESENT);
}

/* Lookups stay O(1) and allocation-free with many images; mostly a smoke
 * test of the table's growth and deletion under load. */
static void test_many(void) {
  CHECK(emu_post(&h, "/_emulator/seed",
                 "{\"resource\":\"cachedimages\",\"group\":\"thaw.dev\","
                 "\"count\":2000,\"namePrefix\":\"many-\","
                 "\"template\":{\"spec\":{\"image\":\"docker.io/many/same:1\"}}}",
                 NULL) == 200);
  /* 2000 objects at once, then a compaction and a drop: the informer
   * re-lists, and the index must come out equal to the server */
  CHECK(emu_post(&h, "/_emulator/compact", "{\"restartWatchCache\":true}", NULL) == 200);
  CHECK(emu_post(&h, "/_emulator/drop-watches", NULL, NULL) == 200);
  WAIT_STATE("docker.io/many/same:1", THAW_IMAGE_PRESENT);
  if (!run_until(&h, matches_server, NULL, 60000))
    CHECK(compare_with_server(1) == 0);

  /* many distinct images: the table grows, and deletes shift probe chains */
  char name[64], image[128];
  for (int i = 0; i < 300; i++) {
    snprintf(name, sizeof(name), "distinct-%03d", i);
    snprintf(image, sizeof(image), "quay.io/distinct/img-%03d:v%d", i, i % 7);
    make_ci(name, image);
  }
  for (int i = 0; i < 300; i += 2) {
    snprintf(name, sizeof(name), "distinct-%03d", i);
    CHECK(sync_delete(&h, &thaw_kube_cachedimages, NULL, name) == 0);
  }
  snprintf(image, sizeof(image), "quay.io/distinct/img-%03d:v%d", 299,
           299 % 7);
  WAIT_STATE(image, THAW_IMAGE_PRESENT);
  snprintf(image, sizeof(image), "quay.io/distinct/img-%03d:v%d", 298,
           298 % 7);
  WAIT_STATE(image, THAW_IMAGE_ABSENT);
  if (!run_until(&h, matches_server, NULL, 60000))
    CHECK(compare_with_server(1) == 0);
}

int main(void) {
  harness_init(&h);
  CHECK(thaw_index_new(&h.loop, h.kube, &ix) == 0);
  thaw_index_set_observer(ix, on_image, NULL);
  test_initial_sync();
  test_phases();
  test_same_image_twice();
  test_digests();
  test_namespace_labels();
  test_drops_and_compaction();
  test_many();
  /* freed with records still in the informers' stores: they go when the
   * informers let go of them (ASan/LSan check it) */
  thaw_index_free(ix);
  thaw_index_free(NULL);
  harness_close(&h);
  if (failures)
    fprintf(stderr, "%d check(s) failed\n", failures);
  return failures != 0;
}
