/* fuzz_manifest.c - libFuzzer target for controller/warm_manifest.c, the
 * parser of manifests and indexes as an upstream registry serves them (so
 * as a lying or broken one may). The first input byte picks the media type,
 * the nesting depth and whether a --platforms filter applies; the rest is
 * the body. Checked on every input:
 *   - it returns 0, THAW_EPARSE or THAW_ENOMEM, never crashes or leaks;
 *   - on an error the result is cleared;
 *   - on success every descriptor has a sha256 digest of 64 lower-case hex
 *     digits and a size >= 0; at most WARM_ENTRIES_MAX entries; an index
 *     keeps at most the children it had, re-serialises itself only when a
 *     filter dropped some, and the re-serialised bytes are JSON holding
 *     exactly the kept children.
 * Any violation aborts. Seeds: test/corpus/manifest (run on a copy). */
#include <cjson/cJSON.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "warm_internal.h"

#define CHECK(cond, what)                                                      \
  do {                                                                         \
    if (!(cond)) {                                                             \
      fprintf(stderr, "manifest fuzz: %s\n", what);                           \
      abort();                                                                 \
    }                                                                          \
  } while (0)

static const char *const media[] = {
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.distribution.manifest.list.v2+json"};

static int digest_ok(const char *d) {
  if (strncmp(d, "sha256:", 7) != 0 || strlen(d) != 71)
    return 0;
  for (const char *p = d + 7; *p; p++)
    if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f')))
      return 0;
  return 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1)
    return 0;
  static const char *const filter[] = {"linux/arm64", "linux/arm/v7", NULL};
  uint8_t sel = data[0];
  const char *m = media[sel & 3];
  int depth = 1 + ((sel >> 2) & 3);
  const char *const *platforms = (sel & 0x10) ? filter : NULL;
  const char *body = (const char *)data + 1;
  size_t len = size - 1;

  warm_manifest_t out;
  char err[256] = "";
  int rc = warm_manifest_parse(body, len, m, depth, platforms, &out, err,
                               sizeof err);
  CHECK(rc == 0 || rc == THAW_EPARSE || rc == THAW_ENOMEM || rc == THAW_E2BIG,
        "unexpected error code");
  if (rc != 0) {
    CHECK(out.descs == NULL && out.n == 0 && out.rewritten == NULL,
          "result not cleared on error");
    CHECK(err[0] != '\0' || rc == THAW_ENOMEM, "error without a reason");
    warm_manifest_clear(&out);
    return 0;
  }
  CHECK(out.n <= WARM_ENTRIES_MAX, "too many entries");
  for (size_t i = 0; i < out.n; i++) {
    CHECK(digest_ok(out.descs[i].digest), "descriptor digest not sha256");
    CHECK(out.descs[i].size >= 0, "negative size");
  }
  if (out.is_index) {
    CHECK(out.n <= out.all, "more children kept than read");
    CHECK(platforms != NULL || out.rewritten == NULL,
          "re-serialised without a filter");
    CHECK((out.rewritten != NULL) == (out.n < out.all),
          "re-serialised exactly when children were dropped");
    if (out.rewritten) {
      CHECK(strlen(out.rewritten) == out.rewritten_len, "rewritten length");
      cJSON *doc = cJSON_Parse(out.rewritten);
      CHECK(doc != NULL, "rewritten index is not JSON");
      const cJSON *kids = cJSON_GetObjectItemCaseSensitive(doc, "manifests");
      CHECK((size_t)cJSON_GetArraySize(kids) == out.n,
            "rewritten index holds other children than kept");
      cJSON_Delete(doc);
    }
  } else {
    CHECK(out.rewritten == NULL, "an image manifest re-serialised");
  }
  warm_manifest_clear(&out);
  return 0;
}
