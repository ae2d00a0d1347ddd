#!/usr/bin/env bash
# test_probe.sh fault|registry TEST_PROBE FAULT_HTTP_PY
#   fault:    starts test/fault_http.py on a free loopback port and runs
#             `TEST_PROBE fault URL`.
#   registry: writes a minimal docker-registry config (filesystem storage in
#             a temp dir, 127.0.0.1 on a free port, no auth) and runs
#             `TEST_PROBE registry ...`, which starts, stops and restarts the
#             registry itself and keeps its live PID in a file.
# Every server is stopped by its PID on any exit; nothing is killed by name.
set -u
mode=$1 bin=$2 fault=$3
tmp=$(mktemp -d "${TMPDIR:-/tmp}/thaw-probe.XXXXXX")
fault_pid=
cleanup() {
  if [ -n "$fault_pid" ]; then kill "$fault_pid" 2>/dev/null; wait "$fault_pid" 2>/dev/null; fi
  if [ -s "$tmp/registry.pid" ]; then
    pid=$(head -n1 "$tmp/registry.pid")
    case $pid in ''|*[!0-9]*) ;; *) kill "$pid" 2>/dev/null ;; esac
  fi
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

case $mode in
fault)
  python3 "$fault" --ready-file "$tmp/ready" &
  fault_pid=$!
  for _ in $(seq 200); do
    [ -s "$tmp/ready" ] && break
    kill -0 "$fault_pid" 2>/dev/null || { echo "fault_http.py exited"; exit 1; }
    sleep 0.05
  done
  [ -s "$tmp/ready" ] || { echo "fault_http.py not ready"; exit 1; }
  "$bin" fault "http://127.0.0.1:$(head -n1 "$tmp/ready")"
  ;;
registry)
  command -v docker-registry >/dev/null || { echo "FAIL: docker-registry not installed (test/deps.sh installs it)"; exit 1; }
  port=$(free_port)
  mkdir -p "$tmp/storage"
  cat >"$tmp/config.yml" <<CFG
version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: $tmp/storage
http:
  addr: 127.0.0.1:$port
CFG
  "$bin" registry "$tmp/config.yml" "$port" "$tmp/registry.pid" "$tmp/registry.log"
  rc=$?
  [ $rc -eq 0 ] || { echo "registry log:"; tail -20 "$tmp/registry.log"; }
  exit $rc
  ;;
*) echo "usage: $0 fault|registry TEST_PROBE FAULT_HTTP_PY"; exit 2 ;;
esac
