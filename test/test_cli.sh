#!/usr/bin/env bash
# A missing or garbled kubeconfig, or no in-cluster environment, must give a
# one-line error on stderr and exit status 2; never a crash or a hang.
set -u
bin=$1
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
failed=0

# expect_exit2 NAME ARGS...: exit status 2 and exactly one non-empty line.
expect_exit2() {
  local name=$1; shift
  timeout 10 env -u KUBECONFIG -u KUBERNETES_SERVICE_HOST -u KUBERNETES_SERVICE_PORT \
    THAW_SERVICEACCOUNT_DIR="$tmp/nosa" "$bin" "$@" >"$tmp/out" 2>"$tmp/err"
  local rc=$? lines
  lines=$(wc -l <"$tmp/err")
  if [ "$rc" -ne 2 ] || [ "$lines" -ne 1 ] || ! grep -q 'thaw-showcase: ' "$tmp/err"; then
    echo "FAIL $name: exit $rc, $lines stderr lines:"; cat "$tmp/err"; failed=1
  else
    echo "ok   $name: $(cat "$tmp/err")"
  fi
}

expect_exit2 missing-file --kubeconfig "$tmp/nope"
printf '\x00\x01garbage: [unclosed\n  - {' >"$tmp/garbled"
expect_exit2 garbled-yaml --kubeconfig "$tmp/garbled"
printf 'apiVersion: v1\nkind: Config\ncurrent-context: x\n' >"$tmp/nocontext"
expect_exit2 no-context --kubeconfig "$tmp/nocontext"
cat >"$tmp/badb64" <<'K'
apiVersion: v1
kind: Config
current-context: c
contexts: [{name: c, context: {cluster: k, user: u}}]
clusters: [{name: k, cluster: {server: "https://127.0.0.1:1", certificate-authority-data: "!!!not base64!!!"}}]
users: [{name: u, user: {token: secret-token-value}}]
K
expect_exit2 bad-base64 --kubeconfig "$tmp/badb64"
if grep -q secret-token-value "$tmp/err"; then echo "FAIL: token leaked into error"; failed=1; fi
expect_exit2 no-in-cluster-env
expect_exit2 bad-flag --jobs notanumber
exit $failed
