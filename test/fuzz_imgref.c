/* fuzz_imgref.c - libFuzzer target for common/oci/imgref: parse -> format ->
 * parse is stable, rewrite -> unrewrite gives back the normalised form, the
 * rewritten form parses, and name derivation stays in bounds. Any violation
 * aborts. Seeds: test/corpus/imgref (run on a copy so it stays clean). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "imgref.h"

static const char *const caches[] = {"localhost:7439", "[::1]:7439",
                                     "registry.thaw.svc:5000"};

#define CHECK(cond, ...)                                                       \
  do {                                                                         \
    if (!(cond)) {                                                             \
      fprintf(stderr, "imgref fuzz: " __VA_ARGS__);                            \
      fprintf(stderr, "\n");                                                   \
      abort();                                                                 \
    }                                                                          \
  } while (0)

static void check_name(const char *s) {
  char name[THAW_CACHEDIMAGE_NAME_MAX + 1];
  int rc = thaw_cachedimage_name(s, name, sizeof(name));
  CHECK(rc == 0 || rc == THAW_EINVAL, "name(%s): rc %d", s, rc);
  if (rc != 0)
    return;
  size_t n = strlen(name);
  CHECK(n >= 12 && n <= THAW_CACHEDIMAGE_NAME_MAX && name[0] != '-' &&
            name[n - 11] == '-' && name[n - 12] != '-',
        "name(%s) = %s", s, name);
  for (size_t i = 0; i < n; i++)
    CHECK((name[i] >= 'a' && name[i] <= 'z') ||
              (name[i] >= '0' && name[i] <= '9') || name[i] == '-',
          "name(%s) = %s", s, name);
}

#define PIN "sha256:" \
  "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

static void check_ref(const thaw_imgref_t *r, const char *cache) {
  char buf[THAW_IMGREF_STR_MAX + 1], rw[THAW_IMGREF_STR_MAX + 1];
  thaw_imgref_t r2;

  CHECK(r->err == NULL && r->len == strlen(r->str) &&
            r->name_len <= THAW_IMGREF_NAME_MAX &&
            r->tag_len <= THAW_IMGREF_TAG_MAX &&
            r->digest_len <= THAW_IMGREF_DIGEST_MAX && (r->tag_len || r->digest_len),
        "bad fields for %s", r->str);
  CHECK(thaw_imgref_format(r, buf, sizeof(buf)) == 0, "format(%s)", r->str);
  CHECK(thaw_imgref_parse(buf, strlen(buf), &r2) == 0, "reparse(%s): %s", buf,
        r2.err);
  CHECK(strcmp(r2.str, buf) == 0, "unstable: %s -> %s", buf, r2.str);

  int rc = thaw_imgref_rewrite(r, cache, NULL, rw, sizeof(rw));
  if (rc == THAW_EINVAL) {
    /* Only a name pushed over 255 characters may refuse: the encoding adds
     * at most 6 characters to the host. */
    CHECK(strlen(cache) + 1 + r->name_len + 6 > THAW_IMGREF_NAME_MAX,
          "rewrite(%s, %s) refused", r->str, cache);
    return;
  }
  CHECK(rc == 0, "rewrite(%s, %s): rc %d", r->str, cache, rc);
  CHECK(thaw_imgref_is_rewritten(rw, cache) == 1, "not rewritten: %s", rw);
  CHECK(thaw_imgref_parse(rw, strlen(rw), &r2) == 0, "rewritten %s: %s", rw,
        r2.err);
  CHECK(strcmp(r2.str, rw) == 0, "rewritten %s not normal: %s", rw, r2.str);
  CHECK(thaw_imgref_rewrite(&r2, cache, NULL, buf, sizeof(buf)) == 0 &&
            strcmp(buf, rw) == 0,
        "rewrite not idempotent: %s -> %s", rw, buf);
  if (thaw_imgref_is_rewritten(r->str, cache))
    return; /* was already under the cache host: left alone */
  CHECK(thaw_imgref_unrewrite(rw, strlen(rw), cache, &r2) == 0,
        "unrewrite(%s): %s", rw, r2.err);
  CHECK(thaw_imgref_format(&r2, buf, sizeof(buf)) == 0 &&
            strcmp(buf, r->str) == 0,
        "round trip %s -> %s -> %s", r->str, rw, buf);

  /* Pinned: a tag gets "@" PIN, a digest stays; the tag-only form of the
   * inverse is the original. */
  char pinned[THAW_IMGREF_STR_MAX + 1];
  CHECK(thaw_imgref_rewrite(r, cache, PIN, pinned, sizeof(pinned)) == 0,
        "pinned rewrite(%s, %s)", r->str, cache);
  if (r->digest_len) {
    CHECK(strcmp(pinned, rw) == 0, "pin replaced a digest: %s", pinned);
    return;
  }
  CHECK(strlen(pinned) == strlen(rw) + 1 + strlen(PIN) &&
            strncmp(pinned, rw, strlen(rw)) == 0,
        "pinned %s of %s", pinned, rw);
  CHECK(thaw_imgref_unrewrite(pinned, strlen(pinned), cache, &r2) == 0 &&
            thaw_imgref_tag_only(&r2, &r2) == 0 && strcmp(r2.str, r->str) == 0,
        "tag_only(unrewrite(%s)) = %s", pinned, r2.str);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static char s[THAW_IMGREF_INPUT_MAX + 16];
  thaw_imgref_t r;
  const char *in = (const char *)data;
  const char *cache = caches[size % (sizeof(caches) / sizeof(caches[0]))];

  if (thaw_imgref_parse(in, size, &r) == 0) {
    check_ref(&r, cache);
    check_name(r.str);
  } else {
    CHECK(r.err && strlen(r.err) <= 120 && r.str[0] == '\0',
          "failure without reason");
  }

  /* Unrewrite arbitrary input: a success must be a stable normalised form
   * that survives its own rewrite round trip. */
  if (thaw_imgref_unrewrite(in, size, cache, &r) == 0)
    check_ref(&r, cache);

  /* Names of arbitrary bytes (up to the first NUL). */
  size_t n = size < sizeof(s) - 1 ? size : sizeof(s) - 1;
  memcpy(s, in, n);
  s[n] = '\0';
  check_name(s);
  (void)thaw_imgref_is_rewritten(s, cache);
  return 0;
}
