#!/usr/bin/env bash
# README's first command: thaw's main job locally, on loopback. Builds thaw,
# starts the API-server emulator (with the CachedImage CRD), a real
# docker-registry as the cache registry and thaw-webhook behind the
# emulator's admission chain, then plays an OSCAR-like workload: job pods
# created with generateName, one every 200 ms (test/demo.py). JOBS=N plays
# more jobs.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
bash test/deps.sh
[ -f build/build.ninja ] || meson setup build >/dev/null
ninja -C build >/dev/null
exec test/with-emulator.sh python3 test/demo.py build "${JOBS:-30}"
