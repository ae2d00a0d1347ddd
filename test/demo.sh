#!/usr/bin/env bash
# README's first command: thaw's main job locally, on loopback. Builds thaw,
# starts the API-server emulator (with the CachedImage CRD), two real
# docker-registry instances (an upstream holding the OSCAR services' images,
# and the cache registry), thaw-webhook behind the emulator's admission chain
# and thaw-controller warming the cache, then plays an OSCAR-like workload:
# job pods created with generateName, one every 200 ms (test/demo.py). Ends
# with the imagemagick image pulled cold by containerd from the upstream made
# to look remote and through thaw, both times printed (root; test/demo_pull.py).
# JOBS=N plays more jobs.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
bash test/deps.sh
[ -f build/build.ninja ] || meson setup build >/dev/null
ninja -C build >/dev/null
exec test/with-emulator.sh python3 test/demo.py build "${JOBS:-30}"
