#!/usr/bin/env python3
"""common/'s folders are layered (common/README.md): a file includes
headers of its own folder or of a lower layer only, and every header it
names exists in exactly one folder. Prints each violation; exits 1 on any."""

import os
import re
import sys

COMMON = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "common")
# folder -> layer; a file may include folders of a strictly lower layer
LAYER = {"base": 0, "json": 1, "metrics": 1, "http": 2, "kube": 3, "oci": 3, "thaw": 4}


def main():
    home = {}      # header name -> folder
    bad = []
    dirs = sorted(d for d in os.listdir(COMMON) if os.path.isdir(os.path.join(COMMON, d)))
    for d in dirs:
        if d not in LAYER:
            bad.append("common/%s: a folder with no layer (add it to LAYER and the README)" % d)
            continue
        for f in os.listdir(os.path.join(COMMON, d)):
            if f.endswith(".h"):
                if f in home:
                    bad.append("%s: in both common/%s and common/%s" % (f, home[f], d))
                home[f] = d
    loose = [f for f in os.listdir(COMMON) if f.endswith((".c", ".h"))]
    bad += ["common/%s: outside every folder" % f for f in loose]
    for d in dirs:
        for f in sorted(os.listdir(os.path.join(COMMON, d))):
            if not f.endswith((".c", ".h")):
                continue
            for inc in re.findall(r'^#include "([^"]+)"', open(os.path.join(COMMON, d, f)).read(), re.M):
                owner = home.get(inc)
                if owner is None:
                    bad.append("common/%s/%s includes %s, which no folder holds" % (d, f, inc))
                elif owner != d and LAYER.get(owner, 99) >= LAYER.get(d, -1):
                    bad.append("common/%s/%s includes %s/%s: not a lower layer" % (d, f, owner, inc))
    for b in bad:
        print("FAIL:", b)
    print("%d headers in %d folders; %d violations" % (len(home), len(dirs), len(bad)))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
