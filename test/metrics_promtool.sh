#!/bin/sh
# metrics_promtool.sh TEST_METRICS: the exposition of a daemon-shaped registry
# must pass `promtool check metrics` with exit 0 (1 is a parse error, 3 lint).
set -u
bin=$1
out=$(mktemp)
trap 'rm -f "$out"' EXIT
"$bin" --print >"$out" || { echo "FAIL: $bin --print exited $?"; exit 1; }
[ -s "$out" ] || { echo "FAIL: empty exposition"; exit 1; }
grep -q '^thaw_build_info{version="' "$out" || { echo "FAIL: no thaw_build_info"; exit 1; }
promtool check metrics <"$out"
rc=$?
[ "$rc" -eq 0 ] || { echo "FAIL: promtool check metrics exited $rc"; cat "$out"; exit 1; }
echo "ok: promtool check metrics ($(wc -l <"$out") lines)"
