#!/usr/bin/env bash
# test_cert_rotation.sh PATH/thaw-webhook: the serving certificate is
# replaced the way a Secret volume (and cert-manager) does it - a new
# directory, then an atomic rename of the `..data` symlink - while h2load
# keeps 4 HTTP/2 connections busy and new connections keep arriving.
# Asserts: h2load sees no failed or errored request; a new connection shows
# the new certificate (a different CA and serial) within 5 s; a key that
# does not match its certificate is refused (logged) and the old
# certificate keeps serving; a good one afterwards is taken; SIGTERM exits
# 0. Runs itself under with-emulator.sh. With THAW_TLS_POLL_ONLY=1 in the
# environment the webhook does not use inotify: the polling path is tested.
set -u
here=$(cd "$(dirname "$0")" && pwd)
[ $# -ge 1 ] || { echo "usage: $0 PATH/thaw-webhook" >&2; exit 2; }
bin=$(cd "$(dirname "$1")" && pwd)/$(basename "$1")
if [ -z "${THAW_EMU_URL:-}" ]; then
  exec sh "$here/with-emulator.sh" bash "$0" "$bin"
fi
fixture=$here/fixtures/admission/oscar-job-pod.json
[ -f "$fixture" ] || { echo "FAIL: no fixture at $fixture"; exit 1; }
command -v h2load >/dev/null || { echo "h2load not installed"; exit 1; }

WH_TMP=$(mktemp -d "${TMPDIR:-/tmp}/thaw-rot.XXXXXX")
. "$here/webhook_lib.sh"
trap wh_cleanup EXIT
trap 'exit 130' INT TERM
log=$WH_TMP/webhook.log
vol=$WH_TMP/vol
mkdir -p "$vol"

wh_mkca ca1 && wh_mkca ca2 && wh_mkca ca3 &&
  wh_mkcert ca1 a && wh_mkcert ca2 b && wh_mkcert ca3 c && wh_mkcert ca1 d ||
  { echo "openssl failed"; exit 1; }
cat "$WH_TMP"/ca1.pem "$WH_TMP"/ca2.pem "$WH_TMP"/ca3.pem >"$WH_TMP/cas.pem"

# publish CERT KEY: what the kubelet does on a Secret update.
n=0
publish() {
  n=$((n + 1))
  local d="..2026_rev$n"
  mkdir "$vol/$d"
  cp "$1" "$vol/$d/tls.crt"
  cp "$2" "$vol/$d/tls.key"
  ln -s "$d" "$vol/..data_tmp"
  mv -T "$vol/..data_tmp" "$vol/..data"     # rename(2): atomic
  [ -n "${old:-}" ] && rm -rf "$vol/$old"
  old=$d
}
publish "$WH_TMP/a.crt" "$WH_TMP/a.key"
ln -s ..data/tls.crt "$vol/tls.crt"
ln -s ..data/tls.key "$vol/tls.key"

# wait_serial WANT SECONDS: a new connection shows serial WANT in time.
wait_serial() {
  local i got=
  for i in $(seq $(($2 * 10))); do
    got=$(wh_served_serial "$WH_PORT")
    [ "$got" = "$1" ] && { echo "$i"; return 0; }
    sleep 0.1
  done
  echo "last seen '$got'"
  return 1
}

wh_start "$bin" "$log" --tls-cert-file "$vol/tls.crt" --tls-key-file "$vol/tls.key" || exit 1
wh_wait_ready || fail "/readyz not 200 within 30 s"
url=https://127.0.0.1:$WH_PORT/mutate
check "serves the first certificate" "$(wh_serial "$WH_TMP/a.crt")" "$(wh_served_serial "$WH_PORT")"

# Load: 4 HTTP/2 connections, 8 streams each, for 6 s; and a stream of new
# HTTP/1.1 connections that must each verify against one of the CAs.
h2load -D 6 -c 4 -m 8 -d "$fixture" -H 'content-type: application/json' \
  "$url" >"$WH_TMP/h2load" 2>&1 &
h2load_pid=$!
(
  end=$((SECONDS + 6))
  while [ $SECONDS -lt $end ]; do
    curl -s --http1.1 --cacert "$WH_TMP/cas.pem" -H 'Content-Type: application/json' \
      --data-binary "@$fixture" -o /dev/null -w '%{http_code}\n' "$url"
    sleep 0.05
  done
) >"$WH_TMP/fresh" 2>&1 &
fresh_pid=$!
sleep 1.5
publish "$WH_TMP/b.crt" "$WH_TMP/b.key"      # a different CA and serial
if t=$(wait_serial "$(wh_serial "$WH_TMP/b.crt")" 5); then
  ok "new connections get the new certificate after $((t * 100)) ms"
else
  fail "new certificate not served within 5 s ($t)"
fi
wait "$h2load_pid"
wait "$fresh_pid"
summary=$(grep -m1 '^requests:' "$WH_TMP/h2load")
echo "     h2load $summary"
echo "     h2load $(grep -m1 '^status codes:' "$WH_TMP/h2load")"
done_n=$(echo "$summary" | sed -n 's/.* \([0-9]*\) done.*/\1/p')
check "h2load: 0 failed" 0 "$(echo "$summary" | sed -n 's/.* \([0-9]*\) failed.*/\1/p')"
check "h2load: 0 errored" 0 "$(echo "$summary" | sed -n 's/.* \([0-9]*\) errored.*/\1/p')"
check "h2load: every request 2xx" "$done_n" \
  "$(sed -n 's/^status codes: \([0-9]*\) 2xx.*/\1/p' "$WH_TMP/h2load")"
if [ "${done_n:-0}" -ge 1000 ]; then ok "h2load: $done_n requests"; else fail "h2load: only '$done_n' requests"; fi
total=$(wc -l <"$WH_TMP/fresh")
good=$(grep -c '^200$' "$WH_TMP/fresh")
if [ "$total" -ge 20 ] && [ "$good" = "$total" ]; then
  ok "fresh connections during the swap: $good/$total verified and answered"
else
  fail "fresh connections: $good of $total answered 200: $(sort "$WH_TMP/fresh" | uniq -c | tr '\n' ' ')"
fi
grep -q '"msg":"tls certificate reloaded"' "$log" && ok "reload logged" || fail "no reload log line"

# A key that does not match the certificate: refused, the old cert stays.
publish "$WH_TMP/c.crt" "$WH_TMP/a.key"
for i in $(seq 50); do
  grep -q '"msg":"tls reload failed' "$log" && break
  sleep 0.1
done
if grep -q '"level":"error","msg":"tls reload failed' "$log"; then
  ok "mismatched key: error logged"
else
  fail "mismatched key: no error logged"
fi
sleep 1.5
check "mismatched key: old certificate still served" \
  "$(wh_serial "$WH_TMP/b.crt")" "$(wh_served_serial "$WH_PORT")"
check "mismatched key: requests still answered" 200 \
  "$(curl -s --cacert "$WH_TMP/cas.pem" -H 'Content-Type: application/json' \
     --data-binary "@$fixture" -o /dev/null -w '%{http_code}' "$url")"

# Garbage in both files: the same.
printf 'not a certificate\n' >"$WH_TMP/junk"
publish "$WH_TMP/junk" "$WH_TMP/junk"
sleep 2.5
check "garbage files: old certificate still served" \
  "$(wh_serial "$WH_TMP/b.crt")" "$(wh_served_serial "$WH_PORT")"

# A good pair again (CA 1, new serial) is taken.
publish "$WH_TMP/d.crt" "$WH_TMP/d.key"
if t=$(wait_serial "$(wh_serial "$WH_TMP/d.crt")" 5); then
  ok "recovers with the next good certificate after $((t * 100)) ms"
else
  fail "good certificate after a bad one not served within 5 s ($t)"
fi

# Files replaced in place (no symlink): caught as well.
rm "$vol/tls.crt" "$vol/tls.key"
cp "$WH_TMP/b.crt" "$vol/tls.crt.new" && mv "$vol/tls.crt.new" "$vol/tls.crt"
cp "$WH_TMP/b.key" "$vol/tls.key.new" && mv "$vol/tls.key.new" "$vol/tls.key"
if t=$(wait_serial "$(wh_serial "$WH_TMP/b.crt")" 5); then
  ok "plain file replacement taken after $((t * 100)) ms"
else
  fail "plain file replacement not served within 5 s ($t)"
fi
metrics=$(curl -s "http://127.0.0.1:$WH_MPORT/metrics")
check "cert_reloads_total{result=success}" 4 \
  "$(echo "$metrics" | awk '$1 == "thaw_webhook_cert_reloads_total{result=\"success\"}" { print $2 }')"
check "cert_reloads_total{result=error}" 2 \
  "$(echo "$metrics" | awk '$1 == "thaw_webhook_cert_reloads_total{result=\"error\"}" { print $2 }')"

wh_stop "$log"
echo "$wh_passed passed, $wh_failed failed"
[ "$wh_failed" -eq 0 ]
