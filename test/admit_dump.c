/* admit_dump.c - runs thaw_admit_review() on one AdmissionReview, for the
 * golden tests (test_admit.py).
 *
 *   admit_dump [--bench N] ENV.json [REQUEST.json|-]
 *
 * ENV.json describes the cluster as the webhook's index would see it:
 *   {"cache_host": "localhost:7439", "system_namespace": "thaw-system",
 *    "registry_up": true,
 *    "namespaces": {"<ns>": ["opted_out", "cache_private"]},
 *    "images": {"<normalised ref>": "ready"|"ready_private"|"present"|
 *               "failed"},               (present: a warm to come, Pending
 *                                         or Warming; failed: all Failed or
 *                                         Expiring)
 *    "digests": {"<normalised ref>": "sha256:..."|null},
 *                                        (status.digest of a Ready image;
 *                                         default: "sha256:" + the SHA-256
 *                                         of the ref; null: none)
 *    "default_image": "absent",          (state of images not listed)
 *    "excluded_namespaces": ["<ns>"],    (--exclude-namespaces)
 *    "cold_wait_seconds": 30,            (--cold-wait; 0 or absent: off)
 *    "leader_fresh": true}               (the Lease is held and fresh)
 * Prints one JSON object: {"rc", "error", "response" (the reply as a raw
 * string, null on error), "recorded" [refs in call order], "decisions"
 * {name: count}, "patched", "dry_run", "gated"}. Exit status 0 when rc is 0, 2 on
 * THAW_EPARSE, 1 otherwise. --bench N repeats the call N times and prints
 * ns per call on stderr. Inputs are capped at 64 MiB. */
#include <cjson/cJSON.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "admit.h"
#include "error.h"

#define INPUT_MAX (64u << 20)

typedef struct {
  cJSON *namespaces;
  cJSON *images;
  cJSON *digests;
  enum thaw_image_state dflt;
  const char *dflt_name;
  cJSON *recorded;
} fake_t;

static char *slurp(const char *path, size_t *len) {
  FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "rb");
  if (!f)
    return NULL;
  size_t cap = 1 << 16, n = 0;
  char *buf = malloc(cap + 1);
  while (buf) {
    size_t got = fread(buf + n, 1, cap - n, f);
    n += got;
    if (got == 0)
      break;
    if (n == cap) {
      if (cap >= INPUT_MAX) {
        free(buf);
        buf = NULL;
        break;
      }
      cap *= 2;
      char *p = realloc(buf, cap + 1);
      if (!p) {
        free(buf);
        buf = NULL;
      }
      buf = p;
    }
  }
  if (f != stdin)
    fclose(f);
  if (buf) {
    buf[n] = '\0';
    *len = n;
  }
  return buf;
}

static enum thaw_image_state state_of(const char *s) {
  if (!s)
    return THAW_IMAGE_ABSENT;
  if (strcmp(s, "ready") == 0)
    return THAW_IMAGE_READY;
  if (strcmp(s, "ready_private") == 0)
    return THAW_IMAGE_READY_PRIVATE;
  if (strcmp(s, "present") == 0 || strcmp(s, "failed") == 0)
    return THAW_IMAGE_PRESENT;
  return THAW_IMAGE_ABSENT;
}

static int ns_flags(const char *ns, void *data) {
  fake_t *f = data;
  cJSON *list = cJSON_GetObjectItemCaseSensitive(f->namespaces, ns);
  int flags = 0;
  cJSON *it;
  cJSON_ArrayForEach(it, list) {
    if (cJSON_IsString(it) && strcmp(it->valuestring, "opted_out") == 0)
      flags |= THAW_NS_OPTED_OUT;
    if (cJSON_IsString(it) && strcmp(it->valuestring, "cache_private") == 0)
      flags |= THAW_NS_CACHE_PRIVATE;
  }
  return flags;
}

/* The fake status.digest of a Ready image (see the header). */
static void digest_of(const fake_t *f, const char *ref, char *out) {
  cJSON *d = cJSON_GetObjectItemCaseSensitive(f->digests, ref);
  out[0] = '\0';
  if (cJSON_IsNull(d))
    return;
  if (cJSON_IsString(d)) {
    snprintf(out, THAW_ADMIT_DIGEST_SIZE, "%s", d->valuestring);
    return;
  }
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int n = 0;
  if (EVP_Digest(ref, strlen(ref), md, &n, EVP_sha256(), NULL) != 1 || n != 32)
    return;
  static const char hexd[] = "0123456789abcdef";
  memcpy(out, "sha256:", 7);
  for (unsigned i = 0; i < 32; i++) {
    out[7 + 2 * i] = hexd[md[i] >> 4];
    out[8 + 2 * i] = hexd[md[i] & 15];
  }
  out[71] = '\0';
}

static enum thaw_image_state image_state(const char *ref, char *digest,
                                         void *data) {
  fake_t *f = data;
  cJSON *s = cJSON_GetObjectItemCaseSensitive(f->images, ref);
  enum thaw_image_state st = cJSON_IsString(s) ? state_of(s->valuestring)
                                               : f->dflt;
  if (st == THAW_IMAGE_READY || st == THAW_IMAGE_READY_PRIVATE)
    digest_of(f, ref, digest);
  return st;
}

static int image_pending(const char *ref, void *data) {
  fake_t *f = data;
  cJSON *s = cJSON_GetObjectItemCaseSensitive(f->images, ref);
  const char *st = cJSON_IsString(s) ? s->valuestring : f->dflt_name;
  return st != NULL && strcmp(st, "present") == 0;
}

static void record(const char *ref, void *data) {
  fake_t *f = data;
  if (f->recorded)
    cJSON_AddItemToArray(f->recorded, cJSON_CreateString(ref));
}

/* A whole number of seconds 0..300 (else 0). */
static unsigned seconds_of(cJSON *o, const char *k) {
  cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
  return cJSON_IsNumber(v) && v->valuedouble > 0 && v->valuedouble <= 300
             ? (unsigned)v->valuedouble
             : 0;
}

static const char *str_or(cJSON *o, const char *k, const char *dflt) {
  cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
  return cJSON_IsString(v) ? v->valuestring : dflt;
}

int main(int argc, char **argv) {
  long bench = 0;
  int a = 1;
  if (argc > 2 && strcmp(argv[1], "--bench") == 0) {
    bench = strtol(argv[2], NULL, 10);
    a = 3;
  }
  if (argc - a < 1 || argc - a > 2) {
    fprintf(stderr, "usage: admit_dump [--bench N] ENV.json [REQUEST|-]\n");
    return 64;
  }
  size_t elen = 0, blen = 0;
  char *etext = slurp(argv[a], &elen);
  cJSON *envj = etext ? cJSON_ParseWithLength(etext, elen) : NULL;
  free(etext);
  if (!cJSON_IsObject(envj)) {
    fprintf(stderr, "admit_dump: cannot read env %s\n", argv[a]);
    cJSON_Delete(envj);
    return 64;
  }
  char *body = slurp(argc - a == 2 ? argv[a + 1] : "-", &blen);
  if (!body) {
    fprintf(stderr, "admit_dump: cannot read the request\n");
    cJSON_Delete(envj);
    return 64;
  }
  fake_t fake = {
      .namespaces = cJSON_GetObjectItemCaseSensitive(envj, "namespaces"),
      .images = cJSON_GetObjectItemCaseSensitive(envj, "images"),
      .digests = cJSON_GetObjectItemCaseSensitive(envj, "digests"),
      .dflt = state_of(str_or(envj, "default_image", "absent")),
      .dflt_name = str_or(envj, "default_image", "absent"),
      .recorded = cJSON_CreateArray(),
  };
  const char *excluded[16] = {NULL};
  const cJSON *ex = cJSON_GetObjectItemCaseSensitive(envj, "excluded_namespaces");
  size_t nex = 0;
  for (const cJSON *e = ex ? ex->child : NULL; e && nex < 15; e = e->next)
    if (cJSON_IsString(e))
      excluded[nex++] = e->valuestring;
  thaw_admit_env_t env = {
      .cache_host = str_or(envj, "cache_host", "localhost:7439"),
      .private_host = str_or(envj, "private_host", "localhost:7440/private"),
      .system_namespace = str_or(envj, "system_namespace", "thaw-system"),
      .excluded_namespaces = excluded,
      .registry_up =
          !cJSON_IsFalse(cJSON_GetObjectItemCaseSensitive(envj, "registry_up")),
      .namespace_flags = ns_flags,
      .image_state = image_state,
      .record = record,
      .data = &fake,
      .cold_wait_s = seconds_of(envj, "cold_wait_seconds"),
      .leader_fresh =
          cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(envj, "leader_fresh")),
      .image_pending = image_pending,
  };
  char *out = NULL, err[256] = "";
  size_t out_len = 0;
  thaw_admit_stats_t st;
  int rc = thaw_admit_review(body, blen, &env, &out, &out_len, &st, err,
                             sizeof(err));
  if (bench > 0) {
    cJSON *saved = fake.recorded;
    fake.recorded = NULL;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (long i = 0; i < bench; i++) {
      char *o = NULL;
      thaw_admit_review(body, blen, &env, &o, NULL, NULL, NULL, 0);
      free(o);
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double ns = ((double)(t1.tv_sec - t0.tv_sec) * 1e9 +
                 (double)(t1.tv_nsec - t0.tv_nsec)) /
                (double)bench;
    fprintf(stderr, "admit_dump: %.0f ns per review (%zu bytes in)\n", ns,
            blen);
    fake.recorded = saved;
  }
  cJSON *res = cJSON_CreateObject();
  cJSON_AddNumberToObject(res, "rc", rc);
  cJSON_AddStringToObject(res, "error", rc ? err : "");
  if (out && strlen(out) == out_len)
    cJSON_AddStringToObject(res, "response", out);
  else
    cJSON_AddNullToObject(res, "response");
  cJSON_AddItemToObject(res, "recorded", fake.recorded);
  cJSON *dec = cJSON_AddObjectToObject(res, "decisions");
  for (int d = 0; d < THAW_DECISION_COUNT && rc == 0; d++)
    if (st.decisions[d])
      cJSON_AddNumberToObject(dec, thaw_decision_name(d), st.decisions[d]);
  cJSON_AddNumberToObject(res, "patched", rc ? 0 : st.patched);
  cJSON_AddNumberToObject(res, "dry_run", rc ? 0 : st.dry_run);
  cJSON_AddNumberToObject(res, "gated", rc ? 0 : st.gated);
  char *text = cJSON_PrintUnformatted(res);
  if (text)
    puts(text);
  free(text);
  cJSON_Delete(res);
  free(out);
  free(body);
  cJSON_Delete(envj);
  if (rc == THAW_EPARSE)
    fprintf(stderr, "admit_dump: %s\n", err);
  return rc == 0 ? 0 : rc == THAW_EPARSE ? 2 : 1;
}
