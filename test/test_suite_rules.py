#!/usr/bin/env python3
"""The rules that keep the suite honest, checked over the tree:
- every Python test built on unittest ends through unittest77.main (a skip
  exits 77 and shows as SKIP, never as a pass);
- every C test with CHECK takes it from check.h or kube_test.h (whose CHECK
  exits or whose main fails on any failed check);
- nothing in the repository refers to the shared folder beside a checkout
  (a clone stands alone)."""

import os
import re
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)


def main():
    bad = []
    for name in sorted(os.listdir(HERE)):
        path = os.path.join(HERE, name)
        if name.endswith(".py") and name != "unittest77.py":
            src = open(path).read()
            if re.search(r"^import unittest$", src, re.M) and "unittest.TestCase" in src \
                    and "unittest77.main(" not in src:
                bad.append("%s: a unittest file that does not end through unittest77.main" % name)
            if re.search(r"unittest\.main\(|TextTestRunner\(", src):
                bad.append("%s: runs unittest itself (skips would pass)" % name)
        if name.startswith("test_") and name.endswith(".c"):
            src = open(path).read()
            if "CHECK(" in src and not re.search(r'#include "(check|kube_test)\.h"', src) \
                    and not re.search(r"return failures \? 1 : 0|failures != 0|if \(failures\)", src):
                bad.append("%s: CHECK without check.h, and no failure exit" % name)
    r = subprocess.run(["git", "-C", REPO, "grep", "-lE", r"\.\./" + "shared", "--", "."],
                       capture_output=True, text=True)
    if r.returncode == 0:
        bad += ["%s: refers to the folder beside the clone" % f for f in r.stdout.split()]
    elif r.returncode != 1:     # 1: no match; anything else: git failed
        bad.append("git grep failed: %s" % r.stderr.strip())
    for b in bad:
        print("FAIL " + b)
    print("suite rules: %d problems" % len(bad))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
