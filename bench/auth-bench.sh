#!/bin/sh
# auth-bench.sh [BUILD] [--quick] [--controller BIN] [--rounds N]
#               [--wrk-seconds S] [--wrk-connections N] [--key ec|rsa]
#               [--image-cache DIR] [--json PATH]
#
# Public pulls through thaw with the cache registry's token auth (issue 12)
# against the same pulls without it, in one run: two stacks side by side
# (A: manifests/registry's config with auth.token, realm thaw-controller's
# GET /token; B: the same without auth), the experiment's 32.8 MB image in
# both, and 5 rounds alternating A and B of a containerd pull through a
# fresh node-local endpoint (cold), a re-pull with the endpoint holding the
# blobs (warm) and a pull by tag (warm-tag); token requests per pull from
# thaw_token_requests_total; then GET /token alone under wrk for 10 s (1 and
# 16 connections). Prints medians and the ratios auth/no-auth.
# --quick: 1 round, 2-s wrk runs (the meson 'bench' smoke auth-bench-smoke;
# it fails on a broken stack: a wrong digest, no token request in an auth
# pull, a ratio outside 0.1-10, non-2xx from /token; never on timings).
# Without --controller it builds BUILD (default build-bench) and keeps the
# image's layers in BUILD/experiment-image-cache. Needs root (containerd)
# and runs itself under test/with-emulator.sh. The body is
# bench/auth_bench.py.
set -eu
src=$(cd "$(dirname "$0")/.." && pwd)
build=$src/build-bench
controller='' imgcache=''
rest=
while [ $# -gt 0 ]; do
    case $1 in
        --controller) controller=$2; shift 2 ;;
        --image-cache) imgcache=$2; shift 2 ;;
        --quick) rest="$rest --quick"; shift ;;
        --rounds|--wrk-seconds|--wrk-connections|--key|--json)
            rest="$rest $1 $2"; shift 2 ;;
        -h|--help) sed -n '2,22p' "$0"; exit 0 ;;
        -*) echo "auth-bench: unknown option $1" >&2; exit 2 ;;
        *) build=$(cd "$(dirname "$1")" && pwd)/$(basename "$1"); shift ;;
    esac
done
if [ "$(id -u)" != 0 ]; then
    echo "auth-bench: needs root (containerd): skipped" >&2
    exit 77
fi
if [ -z "$controller" ]; then
    [ -f "$build/build.ninja" ] || meson setup "$build" "$src" >/dev/null
    ninja -C "$build" controller/thaw-controller >/dev/null
    controller=$build/controller/thaw-controller
    [ -n "$imgcache" ] || imgcache=$build/experiment-image-cache
fi
[ -z "$imgcache" ] || rest="$rest --image-cache $imgcache"
if [ -z "${THAW_EMU_URL:-}" ]; then
    # shellcheck disable=SC2086  # rest: plain flags and values
    exec "$src/test/with-emulator.sh" python3 "$src/bench/auth_bench.py" \
        --controller "$controller" $rest
fi
# shellcheck disable=SC2086
exec python3 "$src/bench/auth_bench.py" --controller "$controller" $rest
