/* test_check_fail.c - a deliberate failure: one CHECK fails and main still
 * returns 0. check.h must turn that into exit status 1, and test/run must
 * count it as a failure (its "meta" line runs this as the suite `canary`). */
#include "check.h"

int main(void) {
  CHECK(1 + 1 == 3);
  return 0;
}
