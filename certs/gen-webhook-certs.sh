#!/bin/bash
# gen-webhook-certs.sh: a private CA and a serving certificate for
# thaw-webhook, plus a kustomization that installs thaw with them.
# Run with --help for the options. Never prints a private key.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
manifests=$here/../manifests

out=$here/out
base=
namespace=thaw-system
service=thaw-webhook
days=365
ca_days=3650
force=0
renew_before_days=30
webhook_config=thaw-webhook
webhook_name=mutate.thaw.dev

usage() {
  cat <<USAGE
Usage: $0 [options]

Makes, with openssl, an EC P-256 CA and a serving certificate (serverAuth)
for the webhook Service's DNS names and 127.0.0.1, and writes into the
output directory:
  ca.key ca.crt          the CA (ca.key stays here; it is not installed)
  ca-previous.crt        the CA this one replaced, trusted until it expires
  tls.key tls.crt        the serving key and certificate
  token.key token.crt    the cache registry's token signing key (EC P-256)
                         and its self-signed certificate (--ca-days)
  cabundle-patch.yaml    sets the webhook configuration's caBundle
  kustomization.yaml     the base (manifests/, or --base) + Secrets
                         thaw-webhook-tls and thaw-token-key + that patch

Install with:  kubectl apply -k OUT

Idempotent: an existing CA is kept while it outlives the new certificate;
an existing serving certificate is kept while it is signed by that CA, has
exactly the wanted names and is valid for more than $renew_before_days days
(a third of --days when that is shorter).

Options:
  --out DIR          output directory (default: certs/out, git-ignored)
  --base DIR         the kustomization to install (default: manifests/,
                     the default install; e.g. manifests/overlays/oscar)
  --namespace NS     the webhook Service's namespace (default: thaw-system);
                     the kustomization moves everything of thaw-system
                     there (thaw-node, the node-local endpoint's, stays)
  --service NAME     the webhook Service's name (default: thaw-webhook);
                     the kustomization renames the Service
  --days N           serving certificate validity in days (default: 365)
  --ca-days N        CA validity in days (default: 3650)
  --force            make a new CA and certificate even if the old are fine
  -h, --help         this text
USAGE
}

die() { echo "gen-webhook-certs: $*" >&2; exit 2; }

need_arg() { [ $# -ge 2 ] && [ -n "$2" ] || die "$1 needs a value"; }

while [ $# -gt 0 ]; do
  case $1 in
    --out) need_arg "$@"; out=$2; shift 2 ;;
    --out=*) out=${1#*=}; shift ;;
    --base) need_arg "$@"; base=$2; shift 2 ;;
    --base=*) base=${1#*=}; shift ;;
    --namespace) need_arg "$@"; namespace=$2; shift 2 ;;
    --namespace=*) namespace=${1#*=}; shift ;;
    --service) need_arg "$@"; service=$2; shift 2 ;;
    --service=*) service=${1#*=}; shift ;;
    --days) need_arg "$@"; days=$2; shift 2 ;;
    --days=*) days=${1#*=}; shift ;;
    --ca-days) need_arg "$@"; ca_days=$2; shift 2 ;;
    --ca-days=*) ca_days=${1#*=}; shift ;;
    --force) force=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) usage >&2; die "unknown option: $1" ;;
  esac
done

dns1123='^[a-z0-9]([-a-z0-9]*[a-z0-9])?$'
[[ $namespace =~ $dns1123 && ${#namespace} -le 63 ]] || die "bad --namespace: $namespace"
[[ $service =~ $dns1123 && ${#service} -le 63 ]] || die "bad --service: $service"
[[ $days =~ ^[1-9][0-9]{0,4}$ ]] || die "bad --days: $days"
[[ $ca_days =~ ^[1-9][0-9]{0,4}$ ]] || die "bad --ca-days: $ca_days"
[ "$ca_days" -ge "$days" ] || die "--ca-days ($ca_days) is shorter than --days ($days)"
# A short-lived certificate (a test's --days 3) renews in its last third, so
# that a re-run right after issuing keeps it.
[ $((days / 3)) -ge "$renew_before_days" ] || renew_before_days=$((days / 3))
command -v openssl >/dev/null || die "openssl not found"
base=${base:-$manifests}
[ -f "$base/kustomization.yaml" ] || [ -f "$base/kustomization.yml" ] ||
  [ -f "$base/Kustomization" ] || die "bad --base: no kustomization in $base"
base=$(cd "$base" && pwd)

# Keys are created readable by the owner only.
umask 077
mkdir -p "$out"
out=$(cd "$out" && pwd)
work=$(mktemp -d "$out/.work.XXXXXX")
trap 'rm -rf "$work"' EXIT

sans="DNS:$service, DNS:$service.$namespace, DNS:$service.$namespace.svc"
sans="$sans, DNS:$service.$namespace.svc.cluster.local, IP Address:127.0.0.1"

# Our own config, so the system openssl.cnf adds no extensions of its own.
cat >"$work/openssl.cnf" <<CNF
[req]
distinguished_name = dn
prompt = no
[dn]
CN = unused
[ca_ext]
basicConstraints = critical, CA:TRUE, pathlen:0
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
[token_ext]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
subjectKeyIdentifier = hash
[leaf_ext]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
subjectAltName = DNS:$service, DNS:$service.$namespace, DNS:$service.$namespace.svc, DNS:$service.$namespace.svc.cluster.local, IP:127.0.0.1
CNF

newkey() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }
serial() { echo "0x$(openssl rand -hex 16)"; }
valid_for() { openssl x509 -in "$1" -noout -checkend $(($2 * 86400)) >/dev/null 2>&1; }
sans_of() { openssl x509 -in "$1" -noout -ext subjectAltName 2>/dev/null | sed -n '2s/^ *//p'; }
same_key() {
  [ "$(openssl x509 -in "$1" -noout -pubkey 2>/dev/null)" = \
    "$(openssl pkey -in "$2" -pubout 2>/dev/null)" ]
}

# CA: kept if present, matching its key, and valid beyond the serving cert.
new_ca=0
if [ $force = 1 ] || [ ! -s "$out/ca.key" ] || [ ! -s "$out/ca.crt" ] ||
   ! same_key "$out/ca.crt" "$out/ca.key" || ! valid_for "$out/ca.crt" "$days"; then
  # A CA renewed because it is expiring stays in the caBundle until it
  # expires: the apiserver then trusts the old serving certificate until the
  # kubelet has put the new one in the pods (up to a minute or so). --force
  # (a leaked key) drops it.
  rm -f "$out/ca-previous.crt"
  if [ $force = 0 ] && [ -s "$out/ca.crt" ] && valid_for "$out/ca.crt" 0; then
    cp "$out/ca.crt" "$out/ca-previous.crt"
  fi
  newkey "$work/ca.key"
  openssl req -x509 -new -config "$work/openssl.cnf" -extensions ca_ext \
    -key "$work/ca.key" -sha256 -days "$ca_days" -set_serial "$(serial)" \
    -subj "/CN=thaw-webhook-ca" -out "$work/ca.crt" 2>/dev/null
  mv -f "$work/ca.key" "$out/ca.key"
  mv -f "$work/ca.crt" "$out/ca.crt"
  new_ca=1
fi

# Serving certificate: re-issued when the CA changed, the names differ, or
# it expires within $renew_before_days days.
if [ $new_ca = 1 ] || [ ! -s "$out/tls.key" ] || [ ! -s "$out/tls.crt" ] ||
   ! same_key "$out/tls.crt" "$out/tls.key" ||
   ! openssl verify -CAfile "$out/ca.crt" "$out/tls.crt" >/dev/null 2>&1 ||
   [ "$(sans_of "$out/tls.crt")" != "$sans" ] ||
   ! valid_for "$out/tls.crt" "$renew_before_days"; then
  newkey "$work/tls.key"
  openssl req -new -config "$work/openssl.cnf" -key "$work/tls.key" \
    -subj "/CN=$service.$namespace.svc" -out "$work/tls.csr" 2>/dev/null
  openssl x509 -req -in "$work/tls.csr" -CA "$out/ca.crt" -CAkey "$out/ca.key" \
    -set_serial "$(serial)" -days "$days" -sha256 \
    -extfile "$work/openssl.cnf" -extensions leaf_ext -out "$work/tls.crt" 2>/dev/null
  openssl verify -CAfile "$out/ca.crt" "$work/tls.crt" >/dev/null ||
    die "the new certificate does not verify against the CA"
  mv -f "$work/tls.key" "$out/tls.key"
  mv -f "$work/tls.crt" "$out/tls.crt"
  issued=yes
else
  issued="no (still valid)"
fi

# The cache registry's token signing key and its self-signed certificate
# (the registry's rootcertbundle): kept while valid for --days; --force
# replaces it. A new one needs thaw-registry and thaw-controller restarted.
if [ $force = 1 ] || [ ! -s "$out/token.key" ] || [ ! -s "$out/token.crt" ] ||
   ! same_key "$out/token.crt" "$out/token.key" || ! valid_for "$out/token.crt" "$days"; then
  newkey "$work/token.key"
  openssl req -x509 -new -config "$work/openssl.cnf" -extensions token_ext \
    -key "$work/token.key" -sha256 -days "$ca_days" -set_serial "$(serial)" \
    -subj "/CN=thaw-token" -out "$work/token.crt" 2>/dev/null
  mv -f "$work/token.key" "$out/token.key"
  mv -f "$work/token.crt" "$out/token.crt"
  token_issued=yes
else
  token_issued="no (still valid)"
fi

# Certificates are public; 0644 so that kubectl in another account reads them.
chmod 600 "$out/ca.key" "$out/tls.key" "$out/token.key"
chmod 644 "$out/ca.crt" "$out/tls.crt" "$out/token.crt"

# The bundle: the CA, and the one it replaced while that is still valid.
if [ -s "$out/ca-previous.crt" ] && ! valid_for "$out/ca-previous.crt" 0; then
  rm -f "$out/ca-previous.crt"
fi
bundle=("$out/ca.crt")
if [ -s "$out/ca-previous.crt" ]; then
  chmod 644 "$out/ca-previous.crt"
  bundle+=("$out/ca-previous.crt")
fi
cabundle=$(cat "${bundle[@]}" | base64 -w0)
rel=$(realpath --relative-to="$out" "$base")

cat >"$work/cabundle-patch.yaml" <<YAML
# Generated by certs/gen-webhook-certs.sh: the CA that signed tls.crt (and
# the CA it replaced, while that is valid).
apiVersion: admissionregistration.k8s.io/v1
kind: MutatingWebhookConfiguration
metadata:
  name: $webhook_config
webhooks:
  - name: $webhook_name
    clientConfig:
      caBundle: $cabundle
YAML

{
  echo "# Generated by certs/gen-webhook-certs.sh; apply with: kubectl apply -k $out"
  echo "# (Re-run the script rather than editing this file.)"
  echo "apiVersion: kustomize.config.k8s.io/v1beta1"
  echo "kind: Kustomization"
  echo "resources:"
  echo "  - $rel"
  echo "secretGenerator:"
  echo "  - name: thaw-webhook-tls"
  echo "    namespace: $namespace"
  echo "    type: kubernetes.io/tls"
  echo "    files: [tls.crt, tls.key, ca.crt]"
  echo "    options:"
  echo "      # A fixed name: the Deployment mounts it, and the webhook reloads"
  echo "      # the files when a re-run of the script updates it."
  echo "      disableNameSuffixHash: true"
  echo "  - name: thaw-token-key"
  echo "    namespace: $namespace"
  echo "    type: kubernetes.io/tls"
  echo "    files: [tls.crt=token.crt, tls.key=token.key]"
  echo "    options:"
  echo "      # A fixed name: the registry and the controller mount it."
  echo "      disableNameSuffixHash: true"
  echo "patches:"
  echo "  - path: cabundle-patch.yaml"
  if [ "$namespace" != thaw-system ]; then
    # Not kustomize's `namespace:`, which would move thaw-node too (and
    # fail: two Namespace objects of one name).
    echo "  # Everything of thaw-system moves to $namespace; kustomize then"
    echo "  # updates the RBAC subjects and the webhook's clientConfig."
    echo "  - target: {namespace: thaw-system}"
    echo "    patch: |-"
    echo "      - op: replace"
    echo "        path: /metadata/namespace"
    echo "        value: $namespace"
    echo "  - target: {kind: Namespace, name: thaw-system}"
    echo "    patch: |-"
    echo "      - op: replace"
    echo "        path: /metadata/name"
    echo "        value: $namespace"
    echo "  # Exclude the new system namespace (by name) instead of thaw-system."
    echo "  - target: {kind: MutatingWebhookConfiguration, name: $webhook_config}"
    echo "    patch: |-"
    echo "      - op: test"
    echo "        path: /webhooks/0/namespaceSelector/matchExpressions/1/values/1"
    echo "        value: thaw-system"
    echo "      - op: replace"
    echo "        path: /webhooks/0/namespaceSelector/matchExpressions/1/values/1"
    echo "        value: $namespace"
  fi
  if [ "$service" != thaw-webhook ]; then
    echo "  # The certificate names Service $service; kustomize renames it and"
    echo "  # updates the webhook's clientConfig to match."
    echo "  - target: {kind: Service, name: thaw-webhook}"
    echo "    patch: |-"
    echo "      - op: replace"
    echo "        path: /metadata/name"
    echo "        value: $service"
  fi
  if [ "$namespace" != thaw-system ]; then
    echo "# The node-local endpoints (namespace thaw-node) fetch from the cache"
    echo "# registry's Service and forward to it and to thaw-token (the realm),"
    echo "# both now in $namespace."
    echo "replacements:"
    echo "  - source: {kind: Service, name: thaw-registry, fieldPath: metadata.namespace}"
    echo "    targets:"
    echo "      - select: {kind: DaemonSet, name: thaw-node-local}"
    echo "        fieldPaths:"
    echo "          - spec.template.spec.containers.[name=registry].env.[name=REGISTRY_PROXY_REMOTEURL].value"
    echo "          - spec.template.spec.initContainers.[name=wait-for-cache].env.[name=REGISTRY_PROXY_REMOTEURL].value"
    echo "          - spec.template.spec.containers.[name=forward].env.[name=THAW_CACHE_SERVICE].value"
    echo "        options: {delimiter: ., index: 1}"
    echo "  - source: {kind: Service, name: thaw-token, fieldPath: metadata.namespace}"
    echo "    targets:"
    echo "      - select: {kind: DaemonSet, name: thaw-node-local}"
    echo "        fieldPaths:"
    echo "          - spec.template.spec.containers.[name=forward].env.[name=THAW_TOKEN_SERVICE].value"
    echo "        options: {delimiter: ., index: 1}"
  fi
} >"$work/kustomization.yaml"
chmod 644 "$work/cabundle-patch.yaml" "$work/kustomization.yaml"
mv -f "$work/cabundle-patch.yaml" "$out/cabundle-patch.yaml"
mv -f "$work/kustomization.yaml" "$out/kustomization.yaml"

echo "gen-webhook-certs: $out"
echo "  CA:          ca.crt ($(openssl x509 -in "$out/ca.crt" -noout -enddate | sed 's/notAfter=/until /'))"
echo "  certificate: tls.crt, issued now: $issued ($(openssl x509 -in "$out/tls.crt" -noout -enddate | sed 's/notAfter=/until /'))"
echo "  names:       $(sans_of "$out/tls.crt")"
echo "  token key:   token.crt, issued now: $token_issued ($(openssl x509 -in "$out/token.crt" -noout -enddate | sed 's/notAfter=/until /'))"
echo "  install:     kubectl apply -k $out"
