#!/bin/sh
# informer-sync.sh [--pods N] [--runs R] [BENCH ARGS...]: sync N seeded
# OSCAR job pods (default 100,000) with thaw's pod informer and with a
# whole-object store, R times (default 3), each against a fresh emulator;
# prints every run and the medians. BUILD selects the build dir (build-inf).
set -eu
src=$(cd "$(dirname "$0")/.." && pwd)
build=${BUILD:-$src/build-inf}
pods=100000
runs=3
while [ $# -gt 0 ]; do
    case $1 in
        --pods) pods=$2; shift 2 ;;
        --runs) runs=$2; shift 2 ;;
        *) break ;;
    esac
done
out=$(mktemp)
trap 'rm -f "$out"' EXIT
i=1
while [ $i -le $runs ]; do
    echo "== run $i/$runs: $pods pods"
    THAW_LOG_LEVEL=warn "$src/test/with-emulator.sh" "$build/bench/informer_sync" \
        --pods "$pods" --max-bytes-per-pod 300 "$@" | tee -a "$out"
    i=$((i + 1))
done
# Median of each RESULT field over the runs.
grep '^RESULT' "$out" | awk '
{ for (i = 2; i <= NF; i++) { split($i, kv, "="); v[kv[1], NR] = kv[2]; keys[kv[1]] = 1 } n = NR }
function median(k,   a, j, m, t) {
    for (j = 1; j <= n; j++) a[j] = v[k, j] + 0
    for (j = 1; j <= n; j++) for (m = j + 1; m <= n; m++) if (a[m] < a[j]) { t = a[j]; a[j] = a[m]; a[m] = t }
    return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
}
END {
    printf "median of %d runs: thaw sync %.2f s, %.0f B/pod RSS, %.0f B/pod heap\n", n,
        median("thaw_s"), median("thaw_rss_bpp"), median("thaw_heap_bpp")
    printf "median of %d runs: baseline sync %.2f s, %.0f B/pod RSS, %.0f B/pod heap\n", n,
        median("base_s"), median("base_rss_bpp"), median("base_heap_bpp")
    printf "ratio thaw/baseline (medians): RSS/pod %.4f, heap/pod %.4f, sync time %.2f\n",
        median("thaw_rss_bpp") / median("base_rss_bpp"),
        median("thaw_heap_bpp") / median("base_heap_bpp"), median("thaw_s") / median("base_s")
}'
