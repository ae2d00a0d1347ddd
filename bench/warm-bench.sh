#!/bin/sh
# warm-bench.sh [--quick] [--thaw PATH|skopeo] [--reps N] [--layers N]
#               [--layer-mib M] [--rate 100mbit] [--cases loopback,netns]
#               [--concurrency N] [--blob-concurrency N]
#
# thaw-controller's warm (CachedImage created -> Ready) against a cold
# `skopeo copy` of the same image (5 x 20 MiB incompressible layers) into a
# fresh cache registry: on loopback (thaw/skopeo, target <= 0.8) and from an
# upstream in a network namespace behind a veth pair with tc tbf 100mbit
# both ways (thaw/(bytes/rate) <= 1.1, thaw/skopeo <= 1.0); the controller's
# peak RSS (VmHWM, <= 32 MiB). 5 runs on loopback, 3 over the link,
# interleaved; medians.
# --quick: 5 x 2 MiB, 1 run (the meson 'bench' smoke; numbers, no asserts).
# --thaw skopeo: dry run of the plumbing, skopeo in thaw's place.
# Without --thaw it builds BUILD (default build-bench) and uses
# BUILD/controller/thaw-controller; until that target exists it falls back
# to the dry run and says so. Needs root (netns, tc). With a binary it runs
# itself under test/with-emulator.sh. The body is bench/warm_bench.py; the
# trap deletes the network namespace and veth it names if Python could not.
set -eu
src=$(cd "$(dirname "$0")/.." && pwd)
thaw=
rest=
while [ $# -gt 0 ]; do
    case $1 in
        --thaw) thaw=$2; shift 2 ;;
        *) rest="$rest $1"; shift ;;
    esac
done
if [ -z "$thaw" ]; then
    build=${BUILD:-$src/build-bench}
    [ -f "$build/build.ninja" ] || meson setup "$build" "$src" >/dev/null
    if ninja -C "$build" controller/thaw-controller >/dev/null 2>&1; then
        thaw=$build/controller/thaw-controller
    else
        echo "warm-bench: cannot build controller/thaw-controller in $build" \
             "(no target yet, or the build fails): DRY RUN with skopeo in thaw's place" >&2
        thaw=skopeo
    fi
fi
if [ "$thaw" != skopeo ] && [ -z "${THAW_EMU_URL:-}" ]; then
    # shellcheck disable=SC2086  # rest is a list of plain flags and numbers
    exec "$src/test/with-emulator.sh" "$0" --thaw "$thaw" $rest
fi
for tool in docker-registry skopeo ip tc unshare; do
    command -v $tool >/dev/null || { echo "warm-bench: $tool not installed" >&2; exit 1; }
done
ns=thaw-wb-$$
cleanup() {
    ip link del "$(printf %.12s "$ns")-r" 2>/dev/null || true
    ip netns del "$ns" 2>/dev/null || true
}
trap cleanup EXIT
trap 'exit 130' INT TERM
# shellcheck disable=SC2086
python3 "$src/bench/warm_bench.py" --thaw "$thaw" --netns "$ns" $rest
