/* fuzz_admit.c - libFuzzer target for webhook/admit: any body either fails
 * with THAW_EPARSE (with a reason) or yields a reply that parses as JSON,
 * echoes the request's uid, says allowed: true, and whose patch (if any) is
 * base64 of a JSON array of ops with "op" and "path" strings. The env says
 * every image is Ready except docker.io ones (cold), so both the rewrite and
 * the record paths run; cold wait is on for some inputs (the gate path).
 * Any violation aborts. Seeds: test/corpus/admit (the fixture requests; run
 * on a copy so it stays clean). */
#include <cjson/cJSON.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "admit.h"
#include "error.h"
#include "imgref.h"

#define CHECK(cond, ...)                                                       \
  do {                                                                         \
    if (!(cond)) {                                                             \
      fprintf(stderr, "admit fuzz: " __VA_ARGS__);                             \
      fprintf(stderr, "\n");                                                   \
      abort();                                                                 \
    }                                                                          \
  } while (0)

static int ns_flags(const char *ns, void *data) {
  (void)data;
  return strcmp(ns, "private") == 0 ? THAW_NS_CACHE_PRIVATE
         : strcmp(ns, "off") == 0   ? THAW_NS_OPTED_OUT
                                    : 0;
}

/* Ready images are pinned to one digest, except "nodigest" ones (decided
 * cold, as the index's Ready objects without a status.digest). */
static enum thaw_image_state image_state(const char *ref, char *digest,
                                         void *data) {
  (void)data;
  CHECK(strlen(ref) <= 1024, "image_state got %zu bytes", strlen(ref));
  if (strncmp(ref, "docker.io/", 10) == 0)
    return strstr(ref, "busybox") ? THAW_IMAGE_PRESENT : THAW_IMAGE_ABSENT;
  if (!strstr(ref, "nodigest"))
    snprintf(digest, THAW_ADMIT_DIGEST_SIZE, "%s",
             "sha256:0123456789abcdef0123456789abcdef0123456789abcdef01234567"
             "89abcdef");
  return strstr(ref, "private") ? THAW_IMAGE_READY_PRIVATE : THAW_IMAGE_READY;
}

/* Cold wait: busybox (PRESENT) has a warm to come unless it is tagged :1. */
static int image_pending(const char *ref, void *data) {
  (void)data;
  return strstr(ref, "busybox") && !strstr(ref, ":1");
}

static unsigned records;
static void record(const char *ref, void *data) {
  (void)data;
  CHECK(ref[0] != '\0', "empty record");
  records++;
}

/* Standard base64 with padding; returns the decoded length or -1. */
static long unbase64(const char *s, size_t n, unsigned char *out) {
  if (n % 4)
    return -1;
  long o = 0;
  for (size_t i = 0; i < n; i += 4) {
    unsigned v = 0;
    int pad = 0;
    for (int k = 0; k < 4; k++) {
      char c = s[i + k];
      unsigned x;
      if (c >= 'A' && c <= 'Z')
        x = (unsigned)(c - 'A');
      else if (c >= 'a' && c <= 'z')
        x = (unsigned)(c - 'a' + 26);
      else if (c >= '0' && c <= '9')
        x = (unsigned)(c - '0' + 52);
      else if (c == '+')
        x = 62;
      else if (c == '/')
        x = 63;
      else if (c == '=' && i + 4 == n && k >= 2)
        x = 0, pad++;
      else
        return -1;
      if (pad && c != '=')
        return -1;
      v = v << 6 | x;
    }
    out[o++] = (unsigned char)(v >> 16);
    if (pad < 2)
      out[o++] = (unsigned char)(v >> 8);
    if (pad < 1)
      out[o++] = (unsigned char)v;
  }
  return o;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  thaw_admit_env_t env = {.cache_host = "localhost:7439",
                          .private_host = THAW_IMGREF_PRIVATE_HOST,
                          .system_namespace = "thaw-system",
                          .registry_up = (size & 1) == 0,
                          .namespace_flags = ns_flags,
                          .image_state = image_state,
                          .record = record,
                          /* cold wait on for half the inputs, the Lease
                           * fresh for half of those */
                          .cold_wait_s = (size & 2) ? 30 : 0,
                          .leader_fresh = (size & 4) != 0,
                          .image_pending = image_pending};
  char *out = NULL, err[160];
  size_t out_len = 0;
  thaw_admit_stats_t st;
  err[0] = '\0';
  int rc = thaw_admit_review((const char *)data, size, &env, &out, &out_len,
                             &st, err, sizeof(err));
  if (rc != 0) {
    CHECK(rc == THAW_EPARSE && out == NULL && err[0], "rc %d err '%s'", rc,
          err);
    return 0;
  }
  CHECK(out && strlen(out) == out_len, "reply length");
  cJSON *req = cJSON_ParseWithLength((const char *)data, size);
  cJSON *uid = cJSON_GetObjectItemCaseSensitive(
      cJSON_GetObjectItemCaseSensitive(req, "request"), "uid");
  CHECK(cJSON_IsString(uid), "rc 0 without request.uid");

  const char *end = NULL;
  cJSON *reply = cJSON_ParseWithLengthOpts(out, out_len + 1, &end, 1);
  CHECK(reply, "reply is not JSON: %s", out);
  cJSON *resp = cJSON_GetObjectItemCaseSensitive(reply, "response");
  cJSON *ruid = cJSON_GetObjectItemCaseSensitive(resp, "uid");
  CHECK(cJSON_IsString(ruid) && strcmp(ruid->valuestring, uid->valuestring) == 0,
        "uid not echoed");
  CHECK(cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(resp, "allowed")),
        "not allowed");
  cJSON *patch = cJSON_GetObjectItemCaseSensitive(resp, "patch");
  CHECK(!patch == !st.patched, "patched %u vs patch field", st.patched);
  CHECK(!st.gated || (st.patched && env.cold_wait_s && env.leader_fresh &&
                      env.registry_up),
        "gated without a patch or with cold wait off");
  if (patch) {
    CHECK(cJSON_IsString(patch), "patch not a string");
    cJSON *pt = cJSON_GetObjectItemCaseSensitive(resp, "patchType");
    CHECK(cJSON_IsString(pt) && strcmp(pt->valuestring, "JSONPatch") == 0,
          "patchType");
    size_t n = strlen(patch->valuestring);
    unsigned char *raw = malloc(n / 4 * 3 + 1);
    CHECK(raw, "oom");
    long m = unbase64(patch->valuestring, n, raw);
    CHECK(m > 0, "patch is not base64");
    cJSON *ops = cJSON_ParseWithLength((const char *)raw, (size_t)m);
    CHECK(cJSON_IsArray(ops) && cJSON_GetArraySize(ops) > 0,
          "patch is not a non-empty array: %.*s", (int)m, raw);
    cJSON *op;
    cJSON_ArrayForEach(op, ops) {
      cJSON *o = cJSON_GetObjectItemCaseSensitive(op, "op");
      cJSON *p = cJSON_GetObjectItemCaseSensitive(op, "path");
      CHECK(cJSON_IsString(o) && cJSON_IsString(p) && p->valuestring[0] == '/',
            "bad op");
      CHECK(cJSON_GetObjectItemCaseSensitive(op, "value"), "op without value");
    }
    cJSON_Delete(ops);
    free(raw);
  }
  cJSON *warnings = cJSON_GetObjectItemCaseSensitive(resp, "warnings");
  cJSON *w;
  cJSON_ArrayForEach(w, warnings) {
    CHECK(cJSON_IsString(w) && strlen(w->valuestring) <= 120, "warning");
  }
  cJSON_Delete(reply);
  cJSON_Delete(req);
  free(out);
  return 0;
}
