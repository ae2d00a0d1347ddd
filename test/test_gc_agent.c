/* test_gc_agent.c - what thaw-registry-gc reads in the collector's output
 * (controller/gc_agent_output.c), by table: the summary line of
 * distribution 2.8 as Debian's docker-registry prints it, and the error of
 * a storage that holds nothing yet. The agent itself runs against the real
 * docker-registry in test/test_gc.py. */
#include <string.h>

#include "check.h"
#include "error.h"
#include "gc_agent.h"

static void test_summary(void) {
  static const struct {
    const char *line;
    int rc;
    long long marked, blobs, manifests;
  } cases[] = {
      /* as docker-registry 2.8.2 prints them */
      {"12 blobs marked, 3 blobs and 0 manifests eligible for deletion", 0, 12,
       3, 0},
      {"0 blobs marked, 0 blobs and 0 manifests eligible for deletion\n", 0, 0,
       0, 0},
      {"5 blobs marked, 3 blobs and 2 manifests eligible for deletion\r\n", 0,
       5, 3, 2},
      {"123456789012345678 blobs marked, 1 blobs and 0 manifests eligible "
       "for deletion",
       0, 123456789012345678LL, 1, 0},
      /* other lines of its output */
      {"t/b: marking manifest sha256:1849a785 ", THAW_EPARSE, 0, 0, 0},
      {"blob eligible for deletion: sha256:949babd9", THAW_EPARSE, 0, 0, 0},
      {"", THAW_EPARSE, 0, 0, 0},
      {"t/a", THAW_EPARSE, 0, 0, 0},
      /* near misses */
      {"12 blobs marked, 3 blobs and 0 manifests eligible for deletion x",
       THAW_EPARSE, 0, 0, 0},
      {" 12 blobs marked, 3 blobs and 0 manifests eligible for deletion",
       THAW_EPARSE, 0, 0, 0},
      {"-1 blobs marked, 3 blobs and 0 manifests eligible for deletion",
       THAW_EPARSE, 0, 0, 0},
      {"12 blobs marked, 3 blobs and manifests eligible for deletion",
       THAW_EPARSE, 0, 0, 0},
      {"1234567890123456789 blobs marked, 1 blobs and 0 manifests eligible "
       "for deletion",
       THAW_EPARSE, 0, 0, 0},
  };
  for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
    thaw_gc_counts_t c = {-7, -7, -7};
    int rc = thaw_gc_parse_summary(cases[i].line, &c);
    if (rc != cases[i].rc)
      fprintf(stderr, "summary case %zu: rc %d\n", i, rc);
    CHECK(rc == cases[i].rc);
    if (cases[i].rc == 0) {
      CHECK(c.blobs_marked == cases[i].marked);
      CHECK(c.blobs_deleted == cases[i].blobs);
      CHECK(c.manifests_deleted == cases[i].manifests);
    } else {
      CHECK(c.blobs_marked == -7); /* untouched on error */
    }
  }
  thaw_gc_counts_t c;
  CHECK(thaw_gc_parse_summary(NULL, &c) == THAW_EPARSE);
}

static void test_empty_storage(void) {
  static const struct {
    const char *err;
    int empty;
  } cases[] = {
      /* docker-registry 2.8.2 on a fresh filesystem root */
      {"failed to garbage collect: failed to mark: filesystem: Path not "
       "found: /docker/registry/v2/repositories",
       1},
      /* repositories exist, no blob was ever stored */
      {"failed to garbage collect: error enumerating blobs: filesystem: Path "
       "not found: /docker/registry/v2/blobs",
       1},
      /* S3's driver says it the same way */
      {"failed to garbage collect: failed to mark: s3aws: Path not found: "
       "/docker/registry/v2/repositories ",
       1},
      /* a missing path deeper down is a real error */
      {"failed to garbage collect: failed to mark: filesystem: Path not "
       "found: /docker/registry/v2/repositories/a/_manifests",
       0},
      {"failed to garbage collect: failed to mark: filesystem: Path not "
       "found: /docker/registry/v2/repositoriesX",
       0},
      {"configuration error: open /nonexistent.yml: no such file or "
       "directory",
       0},
      {"", 0},
  };
  for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
    int got = thaw_gc_output_empty_storage(cases[i].err);
    if (got != cases[i].empty)
      fprintf(stderr, "empty case %zu: %d\n", i, got);
    CHECK(got == cases[i].empty);
  }
  CHECK(thaw_gc_output_empty_storage(NULL) == 0);
}

int main(void) {
  test_summary();
  test_empty_storage();
  return 0;
}
