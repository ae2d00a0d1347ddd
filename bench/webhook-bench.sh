#!/bin/sh
# webhook-bench.sh [--quick] [--webhook PATH] [--reps N] [--images N] [--duration S]
#
# thaw-webhook under h2load over TLS (HTTP/2 -c 4 -m 10 and HTTP/1.1
# keep-alive --h1 -c 8), POSTing the OSCAR job-pod AdmissionReview, with
# N CachedImages (default 10,000, 10% Ready) in its index and a real
# docker-registry behind its health gate. The ceiling is Debian's h2o
# serving the webhook's exact response over TLS with the same certificate
# (bench/h2o-ceiling.conf). Then p50/p99 at half of thaw's peak rate, thaw
# and h2o alike, with the load spread over many connections (HTTP/2 -c 32
# -m 2, HTTP/1.1 -c 64: h2load's --rps timer sends each client's share every
# 10 ms) and, for comparison, in the old 4/8-client bursts; and
# thaw-webhook's VmRSS/VmHWM. Each measurement 3 times; medians.
# --quick: 500 images, 1 s runs, once, no burst runs (the meson 'bench' smoke).
# Without --webhook it builds BUILD (default build-bench, -O2
# debugoptimized) and uses BUILD/webhook/thaw-webhook.
# Runs itself under test/with-emulator.sh. The body is bench/webhook_bench.py.
set -eu
src=$(cd "$(dirname "$0")/.." && pwd)
if [ -z "${THAW_EMU_URL:-}" ]; then
    exec "$src/test/with-emulator.sh" "$0" "$@"
fi
webhook=
rest=
while [ $# -gt 0 ]; do
    case $1 in
        --webhook) webhook=$2; shift 2 ;;
        *) rest="$rest $1"; shift ;;
    esac
done
if [ -z "$webhook" ]; then
    build=${BUILD:-$src/build-bench}
    [ -f "$build/build.ninja" ] || meson setup "$build" "$src" >/dev/null
    ninja -C "$build" webhook/thaw-webhook >/dev/null
    webhook=$build/webhook/thaw-webhook
fi
for tool in h2load h2o docker-registry; do
    command -v $tool >/dev/null || { echo "webhook-bench: $tool not installed" >&2; exit 1; }
done
# shellcheck disable=SC2086  # rest is a list of plain flags and numbers
exec python3 "$src/bench/webhook_bench.py" --webhook "$webhook" $rest
