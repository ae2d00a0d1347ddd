#!/bin/sh
# lifecycle-bench.sh [--quick] [--controller PATH] [BENCH ARGS...]
#
# thaw-controller's use tracking at scale (issue 9): 10,000 Ready
# CachedImages and 100,000 OSCAR job pods (Zipf over the images) in the
# emulator, then a churn of 200 pod creations, finishes and deletions per
# second for 120 s, against the same controller idle for 120 s: its RSS and
# CPU, and its API writes per object and per second (at most one use write
# per object per 10 s, except unused <-> used). See bench/lifecycle_bench.py
# for the method and the other flags (--images, --pods, --rate, --duration,
# --zipf, --ttl, --workers, ...).
# --quick: 150 images, 1,500 pods, 50/s for 12 s (the meson 'bench' smoke:
# the write checks and convergence are asserted, figures only printed).
# Without --controller it builds BUILD (default build-bench) and uses
# BUILD/controller/thaw-controller. It runs itself under
# test/with-emulator.sh.
set -eu
src=$(cd "$(dirname "$0")/.." && pwd)
ctl=
rest=
while [ $# -gt 0 ]; do
    case $1 in
        --controller) ctl=$2; shift 2 ;;
        *) rest="$rest $1"; shift ;;
    esac
done
if [ -z "$ctl" ]; then
    build=${BUILD:-$src/build-bench}
    [ -f "$build/build.ninja" ] || meson setup "$build" "$src" >/dev/null
    ninja -C "$build" controller/thaw-controller >/dev/null
    ctl=$build/controller/thaw-controller
fi
if [ -z "${THAW_EMU_URL:-}" ]; then
    # shellcheck disable=SC2086  # rest is a list of plain flags and numbers
    exec "$src/test/with-emulator.sh" "$0" --controller "$ctl" $rest
fi
# shellcheck disable=SC2086
exec python3 "$src/bench/lifecycle_bench.py" --controller "$ctl" $rest
