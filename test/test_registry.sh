#!/usr/bin/env bash
# test_registry.sh TEST_BIN REGISTRY_PY LYING_PY - starts two plain
# docker-registry instances (A, B), one with htpasswd Basic auth, and the
# lying registry, each on a free loopback port; puts a 50 MB random blob in
# A with curl; a Bearer registry with test/token_server.py when present;
# runs TEST_BIN; stops every server by PID.
set -euo pipefail
bin=$1 regpy=$2 liepy=$3
tmp=$(mktemp -d /tmp/thaw-regtest.XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$tmp"
}
trap cleanup EXIT
trap "exit 1" TERM INT HUP

# Not in $(...): the PID must reach this shell's pids for cleanup.
start_py_registry() { # $1: name; prints host:port into $tmp/$1.host
  python3 "$regpy" >"$tmp/$1.out" 2>&1 &
  pids+=($!)
  for _ in $(seq 300); do
    grep -q '^URL ' "$tmp/$1.out" && break
    sleep 0.05
  done
  sed -n 's|^URL http://||p' "$tmp/$1.out" >"$tmp/$1.host"
}
start_py_registry a
start_py_registry b
A=$(cat "$tmp/a.host") B=$(cat "$tmp/b.host")
[ -n "$A" ] && [ -n "$B" ] || { echo "registries did not start"; cat "$tmp"/*.out; exit 1; }

# The Basic-auth registry (user thaw, password s3cret).
port=$(python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')
htpasswd -Bbn thaw s3cret >"$tmp/htpasswd"
mkdir -p "$tmp/basic"
cat >"$tmp/basic.yml" <<YML
version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $tmp/basic
  delete:
    enabled: true
auth:
  htpasswd:
    realm: thaw-test
    path: $tmp/htpasswd
http:
  addr: 127.0.0.1:$port
YML
docker-registry serve "$tmp/basic.yml" >"$tmp/basic.log" 2>&1 &
pids+=($!)
BASIC=127.0.0.1:$port

python3 "$liepy" "$tmp/lie.port" &
pids+=($!)
for _ in $(seq 300); do
  [ -s "$tmp/lie.port" ] && \
    [ "$(curl -s -o /dev/null -w '%{http_code}' "http://$BASIC/v2/")" = 401 ] && break
  sleep 0.05
done
LIE=127.0.0.1:$(cat "$tmp/lie.port")

# The Bearer registry: test/token_server.py (Docker token spec) in front of
# a docker-registry with token auth; alice may push private/*, anyone pulls
# public/*.
TOKEN=-
tokpy=$(dirname "$regpy")/token_server.py
if [ -f "$tokpy" ]; then
  mkdir -p "$tmp/tok" "$tmp/tokreg"
  cat >"$tmp/tok.json" <<JSON
{"issuer": "thaw-test-issuer", "service": "thaw-test-registry",
 "expires_in": 300, "users": {"alice": "secret"},
 "acl": [{"account": "*", "repo": "public/*", "actions": ["pull"]},
         {"account": "alice", "repo": "private/*", "actions": ["pull", "push"]}]}
JSON
  python3 "$tokpy" --config "$tmp/tok.json" --dir "$tmp/tok" \
    --ready-file "$tmp/tok.port" >"$tmp/tok.log" 2>&1 &
  pids+=($!)
  for _ in $(seq 300); do [ -s "$tmp/tok.port" ] && break; sleep 0.05; done
  tport=$(python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')
  cat >"$tmp/tokreg.yml" <<YML
version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $tmp/tokreg
auth:
  token:
    realm: http://127.0.0.1:$(tr -d '\n' <"$tmp/tok.port")/token
    service: thaw-test-registry
    issuer: thaw-test-issuer
    rootcertbundle: $tmp/tok/cert.pem
http:
  addr: 127.0.0.1:$tport
YML
  docker-registry serve "$tmp/tokreg.yml" >"$tmp/tokreg.log" 2>&1 &
  pids+=($!)
  TOKEN=127.0.0.1:$tport
  for _ in $(seq 300); do
    [ "$(curl -s -o /dev/null -w '%{http_code}' "http://$TOKEN/v2/")" = 401 ] && break
    sleep 0.05
  done
fi

# 50 MB of random bytes, uploaded monolithically into A.
head -c 50000000 /dev/urandom >"$tmp/big"
dg=sha256:$(sha256sum "$tmp/big" | cut -d' ' -f1)
loc=$(curl -sf -X POST -D - -o /dev/null "http://$A/v2/src/app/blobs/uploads/" \
  | tr -d '\r' | sed -n 's/^[Ll]ocation: //p')
case $loc in http*) ;; *) loc=http://$A$loc ;; esac
case $loc in *\?*) sep='&' ;; *) sep='?' ;; esac
curl -sf -X PUT -H 'Content-Type: application/octet-stream' \
  --data-binary @"$tmp/big" "$loc${sep}digest=$dg" >/dev/null
rm -f "$tmp/big"

"$bin" "$A" "$B" "$LIE" "$BASIC" "$dg" 50000000 "$TOKEN"
