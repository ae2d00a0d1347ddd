/* test_patch.c - webhook/patch: JSON string escaping, RFC 6901 token
 * escaping, JSON Patch ops, base64 (RFC 4648 test vectors), the size limit
 * and sticky errors; plus thaw_admit_review() on a minimal review, on every
 * fixture request (ready and cold) and on hostile bodies, so the decision
 * runs under valgrind and ASan too (test_admit.py checks the replies
 * exactly, from python).
 *
 *   test_patch FIXTURES_ADMISSION_DIR   (test/fixtures/admission) */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "admit.h"
#include "check.h"
#include "error.h"
#include "patch.h"

static int text_is(thaw_jbuf_t *b, const char *want) {
  int ok = !b->err && b->p && strcmp(b->p, want) == 0 && b->len == strlen(want);
  if (!ok)
    fprintf(stderr, "got [%s] (err %d), want [%s]\n", b->p ? b->p : "(null)",
            b->err, want);
  return ok;
}

static void test_escape(void) {
  thaw_jbuf_t b;
  thaw_jbuf_init(&b, 0, 0);
  thaw_jbuf_str(&b, "a\"b\\c\n\x01/~\xc3\xa9", 11);
  CHECK(text_is(&b, "\"a\\\"b\\\\c\\u000a\\u0001/~\xc3\xa9\""));
  thaw_jbuf_free(&b);

  thaw_jbuf_init(&b, 0, 0);
  thaw_jbuf_ptr_token(&b, "thaw.dev/original-images", 24);
  CHECK(text_is(&b, "thaw.dev~1original-images"));
  thaw_jbuf_free(&b);

  /* "~1" must become "~01", not "/": ~ is escaped first. */
  thaw_jbuf_init(&b, 0, 0);
  thaw_jbuf_ptr_token(&b, "a/b~c~1\"", 8);
  CHECK(text_is(&b, "a~1b~0c~01\\\""));
  thaw_jbuf_free(&b);
}

static void test_ops(void) {
  thaw_jbuf_t b;
  thaw_jbuf_init(&b, 16, 0);
  thaw_jbuf_raw(&b, "[", 1);
  const char *p1[] = {"spec", "containers", "12", "image"};
  thaw_patch_op_str(&b, "replace", p1, 4, "x/y:1", 5);
  const char *p2[] = {"metadata", "annotations"};
  thaw_patch_op_json(&b, "add", p2, 2, "{\"k\":\"v\"}", 9);
  const char *p3[] = {"metadata", "annotations", "a/b~c"};
  thaw_patch_op_str(&b, "add", p3, 3, "{\"x\":1}", 7);
  thaw_jbuf_raw(&b, "]", 1);
  CHECK(text_is(
      &b, "[{\"op\":\"replace\",\"path\":\"/spec/containers/12/image\","
          "\"value\":\"x/y:1\"},"
          "{\"op\":\"add\",\"path\":\"/metadata/annotations\","
          "\"value\":{\"k\":\"v\"}},"
          "{\"op\":\"add\",\"path\":\"/metadata/annotations/a~1b~0c\","
          "\"value\":\"{\\\"x\\\":1}\"}]"));
  size_t n = 0;
  char *t = thaw_jbuf_take(&b, &n);
  CHECK(t && n > 0 && strlen(t) == n && b.p == NULL && b.len == 0);
  free(t);
  /* take of an empty buffer gives "" */
  t = thaw_jbuf_take(&b, &n);
  CHECK(t && n == 0 && t[0] == '\0');
  free(t);
  thaw_jbuf_free(&b);
}

static void test_base64(void) {
  static const char *const vec[][2] = {
      {"", ""},         {"f", "Zg=="},         {"fo", "Zm8="},
      {"foo", "Zm9v"},  {"foob", "Zm9vYg=="},  {"fooba", "Zm9vYmE="},
      {"foobar", "Zm9vYmFy"}};
  for (size_t i = 0; i < sizeof(vec) / sizeof(vec[0]); i++) {
    thaw_jbuf_t b;
    thaw_jbuf_init(&b, 0, 0);
    thaw_jbuf_raw(&b, "", 0);
    thaw_jbuf_base64(&b, (const unsigned char *)vec[i][0], strlen(vec[i][0]));
    CHECK(text_is(&b, vec[i][1]));
    thaw_jbuf_free(&b);
  }
  thaw_jbuf_t b;
  thaw_jbuf_init(&b, 0, 0);
  const unsigned char hi[] = {0xff, 0xfe, 0xfd, 0x00};
  thaw_jbuf_base64(&b, hi, 4);
  CHECK(text_is(&b, "//79AA=="));
  thaw_jbuf_free(&b);
}

static void test_limit(void) {
  thaw_jbuf_t b;
  thaw_jbuf_init(&b, 0, 8);
  thaw_jbuf_raw(&b, "12345678", 8);
  CHECK(b.err == 0 && b.len == 8);
  thaw_jbuf_raw(&b, "9", 1);
  CHECK(b.err == THAW_E2BIG && b.len == 8);
  thaw_jbuf_raw(&b, "", 0); /* sticky: nothing more happens */
  CHECK(b.err == THAW_E2BIG && thaw_jbuf_take(&b, NULL) == NULL);
  thaw_jbuf_free(&b);
  /* escaping counts exact bytes against max: 3 quotes -> 6 + 2 = 8 */
  thaw_jbuf_init(&b, 0, 8);
  thaw_jbuf_str(&b, "\"\"\"", 3);
  CHECK(b.err == 0 && b.len == 8);
  thaw_jbuf_free(&b);
}

static enum thaw_image_state all_ready(const char *ref, char *digest,
                                       void *data) {
  (void)ref;
  (void)data;
  snprintf(digest, THAW_ADMIT_DIGEST_SIZE, "%s",
           "sha256:0123456789abcdef0123456789abcdef0123456789abcdef01234567"
           "89abcdef");
  return THAW_IMAGE_READY;
}

static void test_review(void) {
  static const char body[] =
      "{\"request\":{\"uid\":\"u-1\",\"kind\":{\"group\":\"\",\"kind\":\"Pod\"},"
      "\"resource\":{\"group\":\"\",\"resource\":\"pods\"},"
      "\"operation\":\"CREATE\",\"namespace\":\"ns\",\"object\":{"
      "\"metadata\":{},\"spec\":{\"containers\":[{\"name\":\"c\","
      "\"image\":\"busybox\"}]}}}}";
  thaw_admit_env_t env = {.cache_host = "localhost:7439",
                          .system_namespace = "thaw-system",
                          .registry_up = 1,
                          .image_state = all_ready};
  char *out = NULL, err[128];
  size_t len = 0;
  thaw_admit_stats_t st;
  int rc = thaw_admit_review(body, sizeof(body) - 1, &env, &out, &len, &st, err,
                             sizeof(err));
  CHECK(rc == 0 && out && strlen(out) == len);
  CHECK(st.patched == 1 && st.decisions[THAW_DECISION_REWRITTEN] == 1);
  CHECK(out && strstr(out, "\"uid\":\"u-1\",\"allowed\":true,"
                           "\"patchType\":\"JSONPatch\",\"patch\":\"W3si"));
  free(out);
  /* trailing garbage and truncation are THAW_EPARSE with a reason */
  out = (char *)1;
  rc = thaw_admit_review(body, sizeof(body) - 2, &env, &out, &len, NULL, err,
                         sizeof(err));
  CHECK(rc == THAW_EPARSE && out == NULL && err[0]);
  char junk[sizeof(body) + 2];
  memcpy(junk, body, sizeof(body) - 1);
  memcpy(junk + sizeof(body) - 1, " x", 2);
  rc = thaw_admit_review(junk, sizeof(junk) - 1, &env, &out, &len, NULL, err,
                         sizeof(err));
  CHECK(rc == THAW_EPARSE && strstr(err, "trailing"));
  CHECK(strcmp(thaw_decision_name(THAW_DECISION_REGISTRY_DOWN),
               "registry_down") == 0);
  CHECK(strcmp(thaw_decision_name(THAW_DECISION_COUNT), "unknown") == 0);
}

static enum thaw_image_state all_cold(const char *ref, char *digest,
                                      void *data) {
  (void)ref;
  (void)digest;
  (void)data;
  return THAW_IMAGE_ABSENT;
}

static unsigned nrecords;
static void count_record(const char *ref, void *data) {
  (void)data;
  CHECK(ref[0] != '\0');
  nrecords++;
}

/* Runs one body; returns rc. On 0 the reply must echo `uid` if given. */
static int run(const char *body, size_t len, int cold, const char *uid) {
  thaw_admit_env_t env = {.cache_host = "localhost:7439",
                          .system_namespace = "thaw-system",
                          .registry_up = 1,
                          .image_state = cold ? all_cold : all_ready,
                          .record = count_record};
  char *out = NULL, err[128] = "";
  size_t n = 0;
  int rc = thaw_admit_review(body, len, &env, &out, &n, NULL, err, sizeof(err));
  CHECK(rc == 0 || (rc == THAW_EPARSE && !out && err[0]));
  if (rc == 0) {
    CHECK(out && strlen(out) == n && strstr(out, "\"allowed\":true"));
    if (uid && out)
      CHECK(strstr(out, uid) != NULL);
  }
  free(out);
  return rc;
}

static void test_fixtures(const char *dir) {
  DIR *d = dir ? opendir(dir) : NULL;
  if (!d) { /* the fixtures are part of the tree: missing is a failure */
    fprintf(stderr, "test_patch: no fixtures at %s\n", dir ? dir : "(none)");
    CHECK(d != NULL);
    return;
  }
  int reviews = 0;
  struct dirent *e;
  while ((e = readdir(d))) {
    size_t nl = strlen(e->d_name);
    if (nl < 6 || strcmp(e->d_name + nl - 5, ".json") != 0)
      continue;
    char path[8192];
    int pn = snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
    if (pn < 0 || (size_t)pn >= sizeof(path))
      continue;
    FILE *f = fopen(path, "rb");
    if (!f)
      continue;
    static char buf[1 << 20];
    size_t len = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[len] = '\0';
    if (!strstr(buf, "\"AdmissionReview\"") || !strstr(buf, "\"request\""))
      continue;
    reviews++;
    CHECK(run(buf, len, 0, NULL) == 0);
    CHECK(run(buf, len, 1, NULL) == 0);
    CHECK(run(buf, len - 2, 0, NULL) == THAW_EPARSE); /* truncated */
  }
  closedir(d);
  CHECK(reviews >= 10);
}

static void test_hostile(void) {
  size_t n = 10u << 20;
  char *junk = malloc(n);
  CHECK(junk != NULL);
  if (!junk)
    return;
  for (size_t i = 0; i < n; i++)
    junk[i] = (char)(1 + (i * 7919) % 250);
  CHECK(run(junk, n, 0, NULL) == THAW_EPARSE);
  /* 100,000 nested arrays, bare and inside a request object */
  size_t depth = 100000, off = 0;
  off += (size_t)snprintf(junk, 64, "{\"request\":{\"uid\":\"u\",\"object\":");
  memset(junk + off, '[', depth);
  memset(junk + off + depth, ']', depth);
  memcpy(junk + off + 2 * depth, "}}", 2);
  CHECK(run(junk, off + 2 * depth + 2, 0, NULL) == THAW_EPARSE);
  CHECK(run(junk + off, 2 * depth, 0, NULL) == THAW_EPARSE);
  static const char *const pass[] = {
      "{\"request\":{\"uid\":\"u\",\"kind\":{\"group\":\"\",\"kind\":"
      "\"Pod\"},\"resource\":{\"group\":\"\",\"resource\":\"pods\"},"
      "\"operation\":\"CREATE\",\"object\":null}}",
      "{\"request\":{\"uid\":\"u\",\"kind\":{\"group\":\"\",\"kind\":"
      "\"Pod\"},\"resource\":{\"group\":\"\",\"resource\":\"pods\"},"
      "\"operation\":\"CREATE\",\"object\":{\"spec\":{\"containers\":"
      "[{\"name\":\"x\"},{\"image\":7},{\"image\":\"UP/x\"},1]}}}}"};
  for (size_t i = 0; i < sizeof(pass) / sizeof(pass[0]); i++)
    CHECK(run(pass[i], strlen(pass[i]), 0, "\"u\"") == 0);
  CHECK(run("[{\"request\":{\"uid\":\"u\"}}]", 27, 0, NULL) == THAW_EPARSE);
  free(junk);
}

int main(int argc, char **argv) {
  test_escape();
  test_ops();
  test_base64();
  test_limit();
  test_review();
  test_hostile();
  test_fixtures(argc > 1 ? argv[1] : NULL);
  if (!failures)
    printf("test_patch: ok\n");
  return failures != 0;
}
