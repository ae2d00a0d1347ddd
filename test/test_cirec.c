/* test_cirec.c - the controller's CachedImage record (controller/cirec.c):
 * the projection of real objects, what counts as a spec change, and the
 * RFC 3339 times status carries (both ways, offsets, garbage). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "cirec.h"
#include "clock.h"
#include "error.h"

static thaw_cirec_t *project(const char *json) {
  cJSON *o = cJSON_Parse(json);
  CHECK(o != NULL);
  size_t size = 0;
  thaw_cirec_t *r = thaw_cirec_project(o, &size, NULL);
  cJSON_Delete(o);
  if (r != NULL)
    CHECK(size >= sizeof *r);
  return r;
}

static void test_project(void) {
  thaw_cirec_t *r = project(
      "{\"metadata\":{\"name\":\"n\",\"uid\":\"u-1\"},"
      "\"spec\":{\"image\":\"docker.io/library/a:1\",\"retain\":true,"
      "\"pullSecrets\":[{\"namespace\":\"p\",\"name\":\"s1\"},"
      "{\"namespace\":\"\",\"name\":\"skipped\"},{\"name\":\"no-ns\"},"
      "{\"namespace\":\"q\",\"name\":\"s2\"}]},"
      "\"status\":{\"phase\":\"Failed\",\"private\":true,\"attempts\":3,"
      "\"sizeBytes\":1234,\"digest\":\"sha256:aa\","
      "\"upstreamDigest\":\"sha256:bb\","
      "\"lastCheckedAt\":\"2026-11-26T21:00:00Z\"}}");
  CHECK(r != NULL);
  CHECK(r->phase == THAW_CI_FAILED);
  CHECK(r->flags == (THAW_CI_PRIVATE | THAW_CI_RETAIN));
  CHECK(r->attempts == 3 && r->size_bytes == 1234);
  CHECK(strcmp(r->uid, "u-1") == 0);
  CHECK(strcmp(r->image, "docker.io/library/a:1") == 0);
  CHECK(strcmp(r->digest, "sha256:aa") == 0);
  CHECK(strcmp(r->upstream, "sha256:bb") == 0);
  CHECK(r->last_checked == 1795726800); /* date -u -d 2026-11-26T21:00:00Z +%s */
  CHECK(r->n_secrets == 2);
  CHECK(strcmp(r->pull_secrets, "p/s1") == 0);
  CHECK(strcmp(r->pull_secrets + 5, "q/s2") == 0);

  /* No status: phase NONE, empty strings, zeros. Odd types are ignored. */
  thaw_cirec_t *e = project(
      "{\"spec\":{\"image\":\"x/y:z\",\"pullSecrets\":\"nope\"},"
      "\"status\":{\"phase\":\"Bogus\",\"attempts\":-4,\"sizeBytes\":\"9\"}}");
  CHECK(e != NULL && e->phase == THAW_CI_NONE && e->attempts == 0);
  CHECK(e->size_bytes == 0 && e->n_secrets == 0 && e->last_checked == 0);
  CHECK(strcmp(e->digest, "") == 0 && strcmp(e->uid, "") == 0);
  CHECK(strcmp(thaw_ci_phase_name(e->phase), "Pending") == 0);

  /* Equality and spec changes. */
  CHECK(thaw_cirec_equal(r, r, NULL));
  CHECK(!thaw_cirec_equal(r, e, NULL));
  CHECK(thaw_cirec_spec_changed(r, e));
  thaw_cirec_t *r2 = project(
      "{\"metadata\":{\"uid\":\"u-1\"},"
      "\"spec\":{\"image\":\"docker.io/library/a:1\",\"retain\":true,"
      "\"pullSecrets\":[{\"namespace\":\"p\",\"name\":\"s1\"},"
      "{\"namespace\":\"q\",\"name\":\"s2\"}]},"
      "\"status\":{\"phase\":\"Ready\"}}");
  CHECK(!thaw_cirec_spec_changed(r, r2)); /* a status change only */
  CHECK(!thaw_cirec_equal(r, r2, NULL));
  CHECK(project("[1,2]") == NULL);
  thaw_cirec_free(r, NULL);
  thaw_cirec_free(r2, NULL);
  thaw_cirec_free(e, NULL);
}

static void test_times(void) {
  char buf[32];
  thaw_rfc3339(0, buf, sizeof buf);
  CHECK(strcmp(buf, "1970-01-01T00:00:00Z") == 0);
  thaw_rfc3339(1795726800, buf, sizeof buf);
  CHECK(strcmp(buf, "2026-11-26T21:00:00Z") == 0);
  CHECK(thaw_rfc3339_parse(buf) == 1795726800);
  CHECK(thaw_rfc3339_parse("2026-11-26T21:00:00.123456Z") == 1795726800);
  CHECK(thaw_rfc3339_parse("2026-11-26T22:30:00+01:30") == 1795726800);
  CHECK(thaw_rfc3339_parse("2026-11-26T19:00:00-02:00") == 1795726800);
  CHECK(thaw_rfc3339_parse("2026-11-26T21:00:00z") == 1795726800);
  static const char *const bad[] = {"", "yesterday", "2026-11-26",
                                    "2026-11-26T21:00:00", /* no zone */
                                    "2026-11-26T21:00:00+1", "2026-13-40T99:00:00Z"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
    CHECK(thaw_rfc3339_parse(bad[i]) == 0);
  /* the ms parser under it (common/base/clock.h): MicroTime keeps its ms,
   * nothing may trail, a date before the epoch works without timegm() */
  int64_t ms = 0;
  CHECK(thaw_time_parse_ms("2026-11-26T21:00:00.123456Z", &ms) == 0 &&
        ms == 1795726800123LL);
  CHECK(thaw_time_parse_ms("2026-11-26T21:00:00.5Z", &ms) == 0 &&
        ms == 1795726800500LL);
  CHECK(thaw_time_parse_ms("1969-12-31T23:59:59Z", &ms) == 0 && ms == -1000);
  CHECK(thaw_time_parse_ms("2026-11-26T21:00:00Zjunk", &ms) == THAW_EINVAL);
  CHECK(thaw_time_parse_ms("2026-11-26T21:00:00.Z", &ms) == THAW_EINVAL);
  CHECK(thaw_time_parse_ms(NULL, &ms) == THAW_EINVAL);
  uint64_t now = thaw_wall_ms();
  CHECK(now > 1795726800000ULL); /* after this test was written */
}

int main(void) {
  test_project();
  test_times();
  puts("cirec: ok");
  return 0;
}
