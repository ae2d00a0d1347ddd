#!/usr/bin/env bash
# README's first command (Step 1): builds thaw, starts the API-server
# emulator on loopback with the CachedImage CRD, and runs thaw-showcase: an
# OSCAR-like stream of job pods followed by informers, with a CachedImage
# recorded for every image. Meanwhile the emulator drops every watch each
# second and compacts its history every 3 s, as a busy real cluster would,
# and the informers recover without losing or repeating an event.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
bash test/deps.sh
[ -f build/build.ninja ] || meson setup build >/dev/null
ninja -C build >/dev/null

exec test/with-emulator.sh bash -c '
  chaos() {
    local i=0
    while sleep 1; do
      i=$((i + 1))
      curl -sk -X POST "$THAW_EMU_URL/_emulator/drop-watches" >/dev/null || true
      [ $((i % 3)) -eq 0 ] && curl -sk -X POST "$THAW_EMU_URL/_emulator/compact" >/dev/null
    done
  }
  chaos & chaos_pid=$!
  trap "kill $chaos_pid 2>/dev/null" EXIT
  build/test/thaw-showcase --kubeconfig "$KUBECONFIG" --jobs "${JOBS:-30}"
'
