# webhook_lib.sh: shell helpers for the thaw-webhook tests (sourced, bash).
# Certificates with openssl, start/stop by PID on ports the kernel picks
# (--bind-address 127.0.0.1:0; the ports are read back from the log), and
# ok/fail counters. The caller sets WH_TMP (a private temp dir) first.

wh_passed=0
wh_failed=0
WH_PID=

ok() { wh_passed=$((wh_passed + 1)); echo "ok   $*"; }
fail() { wh_failed=$((wh_failed + 1)); echo "FAIL $*"; }
# check NAME WANT GOT
check() { if [ "$2" = "$3" ]; then ok "$1"; else fail "$1: want '$2', got '$3'"; fi; }

# wh_mkca NAME: a self-signed CA in $WH_TMP/NAME.pem (+ .key).
wh_mkca() {
  openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=$1" \
    -keyout "$WH_TMP/$1.key" -out "$WH_TMP/$1.pem" >/dev/null 2>&1
}

# wh_mkcert CA NAME: a serving certificate for 127.0.0.1 and localhost,
# signed by CA, with a random serial: $WH_TMP/NAME.crt and NAME.key.
wh_mkcert() {
  local ca=$1 name=$2
  openssl req -newkey rsa:2048 -nodes -subj "/CN=thaw-webhook" \
    -keyout "$WH_TMP/$name.key" -out "$WH_TMP/$name.csr" >/dev/null 2>&1 &&
  printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n' \
    >"$WH_TMP/$name.ext" &&
  openssl x509 -req -in "$WH_TMP/$name.csr" -CA "$WH_TMP/$ca.pem" \
    -CAkey "$WH_TMP/$ca.key" -set_serial "0x$(openssl rand -hex 12)" -days 2 \
    -extfile "$WH_TMP/$name.ext" -out "$WH_TMP/$name.crt" >/dev/null 2>&1
}

# wh_serial FILE: the certificate's serial in hex, as openssl prints it.
wh_serial() { openssl x509 -noout -serial -in "$1" | sed 's/^serial=//'; }

# wh_served_serial PORT: the serial a new TLS connection is shown.
wh_served_serial() {
  openssl s_client -connect "127.0.0.1:$1" -servername localhost </dev/null 2>/dev/null |
    openssl x509 -noout -serial 2>/dev/null | sed 's/^serial=//'
}

# wh_start BIN LOG ARGS...: starts thaw-webhook in the background with the
# emulator's kubeconfig, waits for both "listening" lines and sets WH_PID,
# WH_PORT (TLS) and WH_MPORT (metrics). Returns 1 if it does not come up.
wh_start() {
  local bin=$1 log=$2 i
  shift 2
  "$bin" --kubeconfig "$KUBECONFIG" --namespace thaw-system \
    --bind-address 127.0.0.1:0 --metrics-bind-address 127.0.0.1:0 "$@" \
    >"$log" 2>&1 &
  WH_PID=$!
  for i in $(seq 200); do
    WH_PORT=$(sed -n 's/.*"listener":"webhook","addr":"127.0.0.1:\([0-9]*\)".*/\1/p' "$log")
    WH_MPORT=$(sed -n 's/.*"listener":"metrics","addr":"127.0.0.1:\([0-9]*\)".*/\1/p' "$log")
    [ -n "$WH_PORT" ] && [ -n "$WH_MPORT" ] && return 0
    kill -0 "$WH_PID" 2>/dev/null || break
    sleep 0.1
  done
  echo "thaw-webhook did not start; log:"; cat "$log"
  return 1
}

# wh_wait_ready: /readyz 200 within 30 s.
wh_wait_ready() {
  local i
  for i in $(seq 300); do
    [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$WH_MPORT/readyz")" = 200 ] &&
      return 0
    sleep 0.1
  done
  return 1
}

# wh_stop LOG: SIGTERM, then the exit status must be 0 within 30 s, with no
# sanitizer report in the log.
wh_stop() {
  local log=$1 rc i
  [ -n "$WH_PID" ] || return 0
  kill -TERM "$WH_PID" 2>/dev/null
  for i in $(seq 300); do
    kill -0 "$WH_PID" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$WH_PID" 2>/dev/null; then
    fail "SIGTERM: still running after 30 s"
    kill -KILL "$WH_PID" 2>/dev/null
  fi
  wait "$WH_PID"
  rc=$?
  WH_PID=
  check "SIGTERM: exit status" 0 "$rc"
  if grep -q 'Sanitizer\|runtime error:' "$log"; then
    fail "sanitizer report in the log:"; grep -A30 'Sanitizer\|runtime error:' "$log" | head -60
  else
    ok "no sanitizer report"
  fi
  if grep -q '"msg":"stopped"' "$log"; then ok "graceful stop logged"; else fail "no 'stopped' log line"; fi
}

# wh_cleanup: for trap EXIT; kills our webhook (by PID) and removes WH_TMP.
wh_cleanup() {
  if [ -n "$WH_PID" ]; then
    kill -KILL "$WH_PID" 2>/dev/null
    wait "$WH_PID" 2>/dev/null
  fi
  [ -n "${WH_TMP:-}" ] && rm -rf "$WH_TMP"
}
