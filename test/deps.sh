#!/usr/bin/env bash
# Installs the Debian 12 packages that thaw's build, tests and demo need,
# when any is missing. Used by test/run, test/demo.sh and .ci/run.
set -euo pipefail

PACKAGES=(
  build-essential meson ninja-build pkg-config
  libuv1-dev libcurl4-openssl-dev libcjson-dev libyaml-dev libssl-dev libh2o-dev
  clang libclang-rt-14-dev valgrind
  docker-registry nghttp2-client h2o prometheus wrk
  openssl curl ca-certificates python3 python3-yaml procps iproute2
  skopeo umoci buildah containerd apache2-utils
)

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' \
    || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "deps: installing ${missing[*]}" >&2
SUDO=
[ "$(id -u)" -eq 0 ] || SUDO=sudo
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
