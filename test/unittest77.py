"""unittest's main as meson needs it: exit 0 when every test passed, 1 when
any failed or errored (or none ran), and 77 (meson's SKIP) when none failed
but some were skipped, so a skip is never counted as a pass. Each skip is
printed as a line "SKIP: <test>: <reason>", which test/run lists."""

import sys
import unittest


def main(argv=None, suite=None):
    """Runs the tests of __main__ (argv as unittest.main takes it), or
    `suite` when given, and exits as above."""
    if suite is None:
        result = unittest.main(module="__main__", argv=argv, exit=False, verbosity=2).result
    else:
        result = unittest.TextTestRunner(verbosity=2).run(suite)
    for test, reason in result.skipped:
        print("SKIP: %s: %s" % (test.id(), reason), flush=True)
    if not result.wasSuccessful():
        sys.exit(1)
    if result.testsRun == 0:
        print("no test ran", flush=True)
        sys.exit(1)
    sys.exit(77 if result.skipped else 0)
