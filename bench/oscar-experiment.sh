#!/bin/sh
# oscar-experiment.sh [BUILD] [--jobs N] [--nodes N] [--interval S]
#     [--scenarios LIST] [--patterns LIST] [--rate 100mbit] [--rtt-ms 40]
#     [--out DIR] [--quick] [--webhook BIN --controller BIN]
#
# The reference experiment (issue 11), one command, as root: OSCAR
# imagemagick jobs (75 by default) on 3 nodes (network namespaces, each with
# its own containerd), pulling a 33 MB image from a remote registry with
# token auth behind a 100 Mbit link and 40 ms per request, side by side in
# five scenarios (no-cache, mirror, thaw-cold, thaw-prewarm, floor) and two
# arrival patterns (burst, paced: one job every 2 s). Prints the estimated
# time first (about 16 min in full), then the study's table and its goals
# (bench/experiment_report.py); OUT (default BUILD/experiment-DATE) holds
# experiment.json, jobs.jsonl, the plots and every daemon's log.
# BUILD (default build-exp) is configured and built unless --webhook and
# --controller name the binaries (the meson test does). The image's layers
# are kept by content in BUILD/experiment-image-cache (with the binaries
# given: beside OUT), so a run rebuilds nothing that did not change.
# thaw runs with the --cold-wait of manifests/overlays/oscar.
# --quick: 4 jobs, 1 node, no-cache, thaw-cold and thaw-prewarm, burst and
# paced every 0.5 s, and structural checks (bench/experiment_run.py --check:
# cold pods gated and released, pre-warmed ones rewritten): the meson
# 'bench' smoke test experiment-smoke. The body is bench/experiment_run.py;
# the trap below sweeps the run's namespaces and links if Python could not.
set -eu
src=$(cd "$(dirname "$0")/.." && pwd)
build=$src/build-exp
webhook='' controller='' out='' quick=''
rest=
while [ $# -gt 0 ]; do
    case $1 in
        --webhook) webhook=$2; shift 2 ;;
        --controller) controller=$2; shift 2 ;;
        --out) out=$2; shift 2 ;;
        --quick) quick=1; shift ;;
        --jobs|--nodes|--interval|--scenarios|--patterns|--rate|--rtt-ms)
            rest="$rest $1 $2"; shift 2 ;;
        -h|--help) sed -n '2,25p' "$0"; exit 0 ;;
        -*) echo "oscar-experiment: unknown option $1" >&2; exit 2 ;;
        *) build=$(cd "$(dirname "$1")" && pwd)/$(basename "$1"); shift ;;
    esac
done
if [ "$(id -u)" != 0 ]; then
    echo "oscar-experiment: needs root (network namespaces, tc, containerd)" >&2
    exit 1
fi
for tool in docker-registry skopeo containerd ctr ip tc nsenter curl; do
    command -v $tool >/dev/null || { echo "oscar-experiment: $tool not installed (test/deps.sh)" >&2; exit 1; }
done
imgcache=''
if [ -z "$webhook" ] || [ -z "$controller" ]; then
    [ -f "$build/build.ninja" ] || meson setup "$build" "$src" >/dev/null
    ninja -C "$build" webhook/thaw-webhook controller/thaw-controller >/dev/null
    webhook=$build/webhook/thaw-webhook
    controller=$build/controller/thaw-controller
    imgcache=$build/experiment-image-cache
fi
[ -n "$out" ] || out=$build/experiment-$(date +%Y%m%d-%H%M%S)
[ -n "$imgcache" ] || imgcache=$(dirname "$out")/experiment-image-cache
if [ -n "$quick" ]; then
    # later flags win: --quick's defaults first
    rest="--jobs 4 --nodes 1 --scenarios no-cache,thaw-cold,thaw-prewarm --interval 0.5 --check $rest"
fi
sfx=$(od -An -N3 -tx1 /dev/urandom | tr -d ' \n' | cut -c1-5)
cleanup() {
    for l in $(ip -o link show 2>/dev/null | awk -F': ' '{print $2}' | cut -d@ -f1 \
               | grep -E "^tx[a-z0-9]*-$sfx(-r)?\$"); do
        ip link del "$l" 2>/dev/null || true
    done
    for n in $(ip netns list 2>/dev/null | awk '{print $1}' | grep "^thaw-exp-$sfx-"); do
        ip netns del "$n" 2>/dev/null || true
    done
}
trap cleanup EXIT
trap 'exit 130' INT TERM
# shellcheck disable=SC2086  # rest: plain flags and values
python3 "$src/bench/experiment_run.py" --webhook "$webhook" --controller "$controller" \
    --out "$out" --suffix "$sfx" --image-cache "$imgcache" $rest
