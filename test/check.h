/* check.h - the assertion of thaw's C tests: CHECK(cond) reports a failed
 * condition with its place and counts it in `failures`, and the test goes on,
 * so one run shows every failure. A test's main returns failures != 0. */
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

#endif
