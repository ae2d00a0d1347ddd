#!/bin/sh
# with-emulator.sh CMD ARGS...: run CMD against a fresh kubeemu (test/kubeemu)
# on a free loopback port, with a throwaway CA, a token and a kubeconfig.
# CMD gets KUBECONFIG, THAW_EMU_URL, THAW_EMU_CA, THAW_EMU_TOKEN,
# THAW_EMU_TOKENS_FILE and THAW_EMU_DIR (which also holds ca.key, to mint
# client certificates). A line "TOKEN USERNAME" appended to the tokens file
# adds an identity (e.g. system:serviceaccount:NS:SA) that the emulator's
# audit log (/_emulator/audit) records. Exits with CMD's status.
# THAW_EMU_HTTP=1.1 makes the emulator offer only http/1.1 by ALPN (default:
# h2 and http/1.1, like kube-apiserver); THAW_EMU_MAX_STREAMS sets its
# HTTP/2 SETTINGS_MAX_CONCURRENT_STREAMS (default 100).
set -eu
case "${THAW_EMU_HTTP:-2}" in
    2) http_flags= ;;
    1.1) http_flags=--http1-only ;;
    *) echo "with-emulator: THAW_EMU_HTTP must be 2 or 1.1" >&2; exit 2 ;;
esac
[ $# -ge 1 ] || { echo "usage: $0 CMD [ARGS...]" >&2; exit 2; }
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
dir=$(mktemp -d "${TMPDIR:-/tmp}/thaw-emu.XXXXXX")
pid=
cleanup() {
    if [ -n "$pid" ]; then
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    fi
    if [ -n "${THAW_EMU_KEEP:-}" ]; then
        echo "with-emulator: kept $dir" >&2
    else
        rm -rf "$dir"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=thaw-emu-ca" \
    -keyout "$dir/ca.key" -out "$dir/ca.pem" >/dev/null 2>&1
openssl req -newkey rsa:2048 -nodes -subj "/CN=127.0.0.1" \
    -keyout "$dir/server.key" -out "$dir/server.csr" >/dev/null 2>&1
printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n' > "$dir/ext.cnf"
openssl x509 -req -in "$dir/server.csr" -CA "$dir/ca.pem" -CAkey "$dir/ca.key" \
    -CAcreateserial -days 2 -extfile "$dir/ext.cnf" -out "$dir/server.pem" >/dev/null 2>&1
token=$(openssl rand -hex 24)
echo "$token" > "$dir/tokens"

python3 "$repo/test/kubeemu/server.py" --listen 127.0.0.1:0 \
    --tls-cert "$dir/server.pem" --tls-key "$dir/server.key" \
    --ready-file "$dir/ready" --tokens-file "$dir/tokens" --client-ca "$dir/ca.pem" \
    --bookmark-interval "${THAW_EMU_BOOKMARK_INTERVAL:-60}" \
    --log-file "$dir/emulator.log" $http_flags \
    --max-concurrent-streams "${THAW_EMU_MAX_STREAMS:-100}" &
pid=$!
i=0
while [ ! -s "$dir/ready" ]; do
    kill -0 "$pid" 2>/dev/null || { echo "with-emulator: emulator exited" >&2; exit 1; }
    i=$((i + 1))
    [ $i -le 200 ] || { echo "with-emulator: emulator not ready after 20 s" >&2; exit 1; }
    sleep 0.1
done
port=$(head -n1 "$dir/ready")
url="https://127.0.0.1:$port"

# Load the CRDs (YAML -> JSON with python3-yaml), wait until Established.
for crd in "$repo"/manifests/crd/*.yaml; do
    [ -f "$crd" ] || continue
    python3 - "$crd" "$url" "$dir/ca.pem" "$token" <<'PY' || exit 1
import json, ssl, sys, time, urllib.request
import yaml
path, url, ca, token = sys.argv[1:5]
ctx = ssl.create_default_context(cafile=ca)
hdr = {"Authorization": "Bearer " + token, "Content-Type": "application/json"}
for doc in yaml.safe_load_all(open(path)):
    if not doc or doc.get("kind") != "CustomResourceDefinition":
        continue
    base = url + "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"
    req = urllib.request.Request(base, data=json.dumps(doc).encode(), headers=hdr, method="POST")
    try:
        urllib.request.urlopen(req, context=ctx).read()
    except urllib.error.HTTPError as e:
        sys.exit("with-emulator: loading %s: %s %s" % (path, e.code, e.read().decode()))
    name = doc["metadata"]["name"]
    for _ in range(100):
        got = json.load(urllib.request.urlopen(
            urllib.request.Request(base + "/" + name, headers=hdr), context=ctx))
        conds = (got.get("status") or {}).get("conditions") or []
        if any(c["type"] == "Established" and c["status"] == "True" for c in conds):
            break
        time.sleep(0.1)
    else:
        sys.exit("with-emulator: CRD %s not Established" % name)
PY
done

cat > "$dir/kubeconfig" <<KC
apiVersion: v1
kind: Config
clusters:
- name: emu
  cluster:
    server: $url
    certificate-authority: $dir/ca.pem
users:
- name: emu
  user:
    token: $token
contexts:
- name: emu
  context:
    cluster: emu
    user: emu
    namespace: default
current-context: emu
KC

set +e
KUBECONFIG="$dir/kubeconfig" THAW_EMU_URL="$url" THAW_EMU_CA="$dir/ca.pem" \
    THAW_EMU_TOKEN="$token" THAW_EMU_TOKENS_FILE="$dir/tokens" THAW_EMU_DIR="$dir" \
    "$@"
rc=$?
set -e
exit $rc
