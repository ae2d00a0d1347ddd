#!/usr/bin/env bash
# test_webhook_server.sh PATH/thaw-webhook: the webhook's serving side over
# real TLS with curl (HTTP/1.1 and HTTP/2), openssl s_client and promtool,
# against the API-server emulator (re-runs itself under with-emulator.sh).
# Covers: a valid review; 413 for 10 MiB on both protocols (no reset); 400
# for truncated JSON, a top-level array and 100,000 nested arrays; 200
# pass-through for "object": null and a container without image; 415; 405;
# 404; /metrics valid and counting; /healthz; /readyz; TLS 1.1 refused, 1.2
# and 1.3 served; ALPN h2 and http/1.1; stalled bodies cut after ~10 s;
# bad flags exit 2 with one line; SIGTERM exits 0, cleanly under ASan.
set -u
here=$(cd "$(dirname "$0")" && pwd)
[ $# -ge 1 ] || { echo "usage: $0 PATH/thaw-webhook" >&2; exit 2; }
bin=$(cd "$(dirname "$1")" && pwd)/$(basename "$1")
if [ -z "${THAW_EMU_URL:-}" ]; then
  exec sh "$here/with-emulator.sh" bash "$0" "$bin"
fi
fixture=$here/fixtures/admission/oscar-job-pod.json
[ -f "$fixture" ] || { echo "FAIL: no fixture at $fixture"; exit 1; }

WH_TMP=$(mktemp -d "${TMPDIR:-/tmp}/thaw-wh.XXXXXX")
. "$here/webhook_lib.sh"
trap wh_cleanup EXIT
trap 'exit 130' INT TERM
log=$WH_TMP/webhook.log

# --- bad flags: one line on stderr, exit status 2 -------------------------
wh_mkca ca && wh_mkcert ca tls && wh_mkcert ca other || { echo "openssl failed"; exit 1; }
expect2() {
  local name=$1; shift
  timeout 10 "$bin" "$@" >"$WH_TMP/out" 2>"$WH_TMP/err"
  local rc=$? lines
  lines=$(wc -l <"$WH_TMP/err")
  if [ "$rc" -eq 2 ] && [ "$lines" -eq 1 ] && grep -q '^thaw-webhook: ' "$WH_TMP/err"; then
    ok "flags: $name ($(cat "$WH_TMP/err"))"
  else
    fail "flags: $name: exit $rc, $lines lines: $(cat "$WH_TMP/err")"
  fi
}
tls=(--tls-cert-file "$WH_TMP/tls.crt" --tls-key-file "$WH_TMP/tls.key")
expect2 unknown-flag --bogus
expect2 missing-value "${tls[@]}" --bind-address
expect2 no-cert --tls-key-file "$WH_TMP/tls.key"
expect2 extra-argument "${tls[@]}" stray
expect2 bad-log-level "${tls[@]}" --log-level loud
expect2 bad-bind "${tls[@]}" --bind-address 127.0.0.1:99999
expect2 bad-bind-host "${tls[@]}" --bind-address example.com:9443
expect2 bad-metrics-bind "${tls[@]}" --metrics-bind-address nonsense
expect2 bad-namespace "${tls[@]}" --namespace Not_A_Namespace
expect2 bad-exclude-namespaces "${tls[@]}" --exclude-namespaces oscar,Not_A_Namespace
expect2 bad-cache-host "${tls[@]}" --cache-host "http://x/y"
expect2 bad-registry-url "${tls[@]}" --registry-url "ftp://x" --kubeconfig "$KUBECONFIG"
expect2 cold-wait-over-5m "${tls[@]}" --cold-wait 5m1s
expect2 cold-wait-negative "${tls[@]}" --cold-wait=-1s
expect2 cold-wait-malformed "${tls[@]}" --cold-wait 30
expect2 cold-wait-empty "${tls[@]}" --cold-wait=
expect2 missing-cert-file --tls-cert-file "$WH_TMP/nope.crt" --tls-key-file "$WH_TMP/tls.key" --kubeconfig "$KUBECONFIG"
expect2 key-mismatch --tls-cert-file "$WH_TMP/tls.crt" --tls-key-file "$WH_TMP/other.key" --kubeconfig "$KUBECONFIG"
expect2 missing-kubeconfig "${tls[@]}" --kubeconfig "$WH_TMP/nope"
if "$bin" --help | grep -q -- '--metrics-bind-address'; then ok "--help"; else fail "--help"; fi
for v in 0 30s 5m 1m30s; do
  if "$bin" --cold-wait "$v" --help >/dev/null; then ok "--cold-wait $v"; else fail "--cold-wait $v refused"; fi
done
if "$bin" --version | grep -qx 'thaw-webhook [0-9][0-9.]*'; then ok "--version"; else fail "--version: $("$bin" --version 2>&1)"; fi

# --- start ------------------------------------------------------------------
wh_start "$bin" "$log" "${tls[@]}" || exit 1
if wh_wait_ready; then ok "/readyz 200 once synced"; else fail "/readyz not 200 within 30 s"; fi
url=https://127.0.0.1:$WH_PORT/mutate
murl=http://127.0.0.1:$WH_MPORT
uid=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["request"]["uid"])' "$fixture")

# Stalled bodies run in the background meanwhile (each takes ~10 s).
for p in h1 h2; do
  for m in silent trickle; do
    python3 "$here/webhook_stall.py" "$WH_PORT" "$WH_TMP/ca.pem" "$p" "$m" 25 \
      >"$WH_TMP/stall-$p-$m" 2>&1 &
  done
done

# post VERSION FILE [CONTENT-TYPE]: "CODE HTTPVERSION CURLEXIT", body in $WH_TMP/body
post() {
  local ct=${3-application/json} out rc
  out=$(curl -s "$1" --cacert "$WH_TMP/ca.pem" -H "Content-Type: $ct" \
    --data-binary "@$2" -o "$WH_TMP/body" -w '%{http_code} %{http_version}' "$url")
  rc=$?
  echo "$out $rc"
}

# mkreview NAME PYTHON-EXPR: a variant of the fixture (r is the review).
mkreview() {
  python3 - "$fixture" "$WH_TMP/$1.json" "$2" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
exec(sys.argv[3])
json.dump(r, open(sys.argv[2], "w"))
PY
}

head -c $((10 << 20)) /dev/zero | tr '\0' ' ' >"$WH_TMP/big.json"
head -c 700 "$fixture" >"$WH_TMP/truncated.json"
printf '[{"apiVersion":"admission.k8s.io/v1"}]' >"$WH_TMP/array.json"
python3 -c 'import sys; sys.stdout.write("{\"apiVersion\":\"admission.k8s.io/v1\",\"kind\":\"AdmissionReview\",\"request\":{\"uid\":\"deep\",\"object\":" + "[" * 100000 + "]" * 100000 + "}}")' >"$WH_TMP/deep.json"
mkreview null-object 'r["request"]["object"] = None'
mkreview no-image 'del r["request"]["object"]["spec"]["containers"][0]["image"]'

for v in 1.1 2; do
  flag=--http$v
  got=$(post $flag "$fixture")
  check "HTTP/$v valid review" "200 $v 0" "$got"
  got_uid=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["response"]["uid"])' "$WH_TMP/body" 2>/dev/null)
  check "HTTP/$v uid echoed" "$uid" "$got_uid"
  check "HTTP/$v 10 MiB body: 413, no reset" "413 $v 0" "$(post $flag "$WH_TMP/big.json")"
  check "HTTP/$v truncated JSON" "400 $v 0" "$(post $flag "$WH_TMP/truncated.json")"
  if [ "$(wc -l <"$WH_TMP/body")" -eq 1 ] && [ -s "$WH_TMP/body" ]; then
    ok "HTTP/$v 400 has a one-line reason: $(cat "$WH_TMP/body")"
  else
    fail "HTTP/$v 400 body is not one line: $(head -c 300 "$WH_TMP/body")"
  fi
  check "HTTP/$v top-level array" "400 $v 0" "$(post $flag "$WH_TMP/array.json")"
  check "HTTP/$v 100,000 nested arrays" "400 $v 0" "$(post $flag "$WH_TMP/deep.json")"
  check "HTTP/$v object null: pass-through" "200 $v 0" "$(post $flag "$WH_TMP/null-object.json")"
  check "HTTP/$v container without image" "200 $v 0" "$(post $flag "$WH_TMP/no-image.json")"
  check "HTTP/$v text/plain: 415" "415 $v 0" "$(post $flag "$fixture" text/plain)"
  check "HTTP/$v no content type: 415" "415 $v 0" "$(post $flag "$fixture" "")"
  check "HTTP/$v json with charset" "200 $v 0" "$(post $flag "$fixture" 'application/json; charset=utf-8')"
  check "HTTP/$v GET /mutate: 405" "405" \
    "$(curl -s $flag --cacert "$WH_TMP/ca.pem" -o /dev/null -w '%{http_code}' "$url")"
  check "HTTP/$v other path: 404" "404" \
    "$(curl -s $flag --cacert "$WH_TMP/ca.pem" -o /dev/null -w '%{http_code}' "https://127.0.0.1:$WH_PORT/other")"
done
grep -q '"level":"info".*"apiVersion"' "$log" && fail "a request body was logged at info level"

# --- TLS versions and ALPN --------------------------------------------------
sc() { timeout 10 openssl s_client -connect "127.0.0.1:$WH_PORT" -servername localhost \
  -CAfile "$WH_TMP/ca.pem" "$@" </dev/null 2>&1; }
if sc -tls1_1 -cipher 'DEFAULT:@SECLEVEL=0' | grep -q 'Cipher is (NONE)\|alert protocol version\|no protocols available'; then
  ok "TLS 1.1 refused"
else
  fail "TLS 1.1 accepted"
fi
for v in 1_2 1_3; do
  out=$(sc -tls$v)
  if echo "$out" | grep -q "Verify return code: 0 (ok)" && echo "$out" | grep -q "TLSv${v/_/.}"; then
    ok "TLS ${v/_/.} served: $(echo "$out" | grep -m1 -o 'Cipher is [^ ]*')"
  else
    fail "TLS ${v/_/.}: $(echo "$out" | tail -5)"
  fi
done
if sc -tls1_2 -cipher 'AES128-SHA' | grep -q 'Cipher is (NONE)\|handshake failure'; then
  ok "TLS 1.2 without forward secrecy refused"
else
  fail "TLS 1.2 AES128-SHA accepted"
fi
check "ALPN h2" "ALPN protocol: h2" "$(sc -alpn h2,http/1.1 | grep -m1 -o 'ALPN protocol: .*')"
check "ALPN http/1.1" "ALPN protocol: http/1.1" "$(sc -alpn http/1.1 | grep -m1 -o 'ALPN protocol: .*')"

# --- metrics, health --------------------------------------------------------
check "/healthz" 200 "$(curl -s -o /dev/null -w '%{http_code}' "$murl/healthz")"
check "POST /healthz: 405" 405 "$(curl -s -o /dev/null -w '%{http_code}' -d x "$murl/healthz")"
curl -s "$murl/metrics" >"$WH_TMP/metrics"
ctype=$(curl -s -o /dev/null -w '%{content_type}' "$murl/metrics")
check "/metrics content type" "text/plain; version=0.0.4; charset=utf-8" "$ctype"
if command -v promtool >/dev/null; then
  if promtool check metrics <"$WH_TMP/metrics" >"$WH_TMP/promtool" 2>&1; then
    ok "promtool check metrics"
  else
    fail "promtool check metrics: $(cat "$WH_TMP/promtool")"
  fi
else
  fail "promtool not installed"
fi
metric() { awk -v k="$1" '$1 == k { print $2 }' "$WH_TMP/metrics"; }
check 'requests_total{code="200"}' 8 "$(metric 'thaw_webhook_requests_total{code="200"}')"
check 'requests_total{code="413"}' 2 "$(metric 'thaw_webhook_requests_total{code="413"}')"
check 'requests_total{code="400"}' 6 "$(metric 'thaw_webhook_requests_total{code="400"}')"
check 'requests_total{code="415"}' 4 "$(metric 'thaw_webhook_requests_total{code="415"}')"
check 'requests_total{code="405"}' 2 "$(metric 'thaw_webhook_requests_total{code="405"}')"
check 'admission_duration_seconds_count' 22 "$(metric 'thaw_webhook_admission_duration_seconds_count')"
cold=$(metric 'thaw_webhook_images_total{decision="cold"}')
if [ "${cold:-0}" != 0 ]; then ok "images_total{decision=cold} moved ($cold)"; else fail "images_total cold: '$cold'"; fi
for m in thaw_webhook_records_total thaw_cache_registry_up thaw_kube_requests_total \
    thaw_build_info process_resident_memory_bytes process_cpu_seconds_total \
    process_start_time_seconds; do
  grep -q "^# TYPE $m " "$WH_TMP/metrics" && ok "metric $m" || fail "metric $m missing"
done
check "registry gate down without --registry-url" 0 "$(metric thaw_cache_registry_up)"

# --- stalled bodies ---------------------------------------------------------
wait $(jobs -p | grep -vx "$WH_PID")
for f in "$WH_TMP"/stall-*; do
  read -r state secs <"$f"
  name=${f##*/stall-}
  if [ "$state" = closed ] && awk -v s="$secs" 'BEGIN { exit !(s >= 9 && s <= 13) }'; then
    ok "stalled body ($name) cut after $secs s"
  else
    fail "stalled body ($name): $(cat "$f")"
  fi
done

# --- graceful stop with a request in flight ---------------------------------
# A body trickled over 2 s; SIGTERM arrives mid-way; the answer still comes.
(
  { head -c 200 "$fixture"; sleep 2; tail -c +201 "$fixture"; } |
    curl -s --http1.1 --cacert "$WH_TMP/ca.pem" -H 'Content-Type: application/json' \
      -H 'Expect:' -X POST -T - -o /dev/null -w '%{http_code}' "$url" >"$WH_TMP/inflight"
) &
inflight=$!
sleep 1
wh_stop "$log"
wait "$inflight"
check "request in flight at SIGTERM answered" 200 "$(cat "$WH_TMP/inflight")"
check "no new connections after stop" 000 \
  "$(curl -s --cacert "$WH_TMP/ca.pem" -o /dev/null -w '%{http_code}' "$url")"

echo "$wh_passed passed, $wh_failed failed"
[ "$wh_failed" -eq 0 ]
