/* check.h - the assertion of thaw's C tests: CHECK(cond) reports a failed
 * condition with its place and counts it in `failures`, and the test goes on,
 * so one run shows every failure.
 *
 * The test's exit status does not depend on its own main remembering to
 * look at `failures`: this header supplies the process's main, which runs
 * the test's main (renamed by the macro below) and exits 1 when any CHECK
 * failed, whatever the test's main returned. test/test_check_fail.c proves
 * it, and test/run counts that deliberate failure (the "meta" line). */
#ifndef THAW_TEST_CHECK_H
#define THAW_TEST_CHECK_H

#include <stdio.h>

static int failures;

#define CHECK(cond)                                                            \
  do {                                                                         \
    if (!(cond)) {                                                             \
      fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
      failures++;                                                              \
    }                                                                          \
  } while (0)

static int thaw_check_main(int argc, char **argv);

int main(int argc, char **argv) {
  int rc = thaw_check_main(argc, argv);
  if (failures) {
    fprintf(stderr, "%d CHECK%s failed\n", failures, failures == 1 ? "" : "s");
    return 1;
  }
  return rc;
}

/* The test's `int main(void)` or `int main(int argc, char **argv)` becomes
 * thaw_check_main with both parameters, which it may ignore. */
#define main(...)                                                              \
  thaw_check_main(int argc __attribute__((unused)),                            \
                  char **argv __attribute__((unused)))

#endif
