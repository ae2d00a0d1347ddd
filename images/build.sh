#!/usr/bin/env bash
# images/build.sh BUILDDIR: the container images of thaw's three daemons,
# built from scratch with buildah from BUILDDIR's binaries, written as OCI
# archives BUILDDIR/images/thaw-{webhook,controller,registry-gc}-VERSION.oci.tar
# (see images/README.md; `ninja -C BUILDDIR images` runs this).
#
# Each image holds the daemon (debug info stripped), exactly the shared
# libraries `ldd` names (symlinks on the way recreated, the dynamic loader
# included), /etc/passwd and /etc/group with user nonroot (65532), a
# nsswitch.conf and the CA bundle libcurl and Go read. thaw-controller also
# holds thaw-node-forward (stripped too) as /usr/bin/thaw-node-forward, the
# node-local DaemonSet's `forward` container (its command), so that no
# fourth image is needed; its Entrypoint stays thaw-controller.
# thaw-registry-gc also holds the distribution registry (Debian's
# docker-registry, unchanged) as /usr/bin/registry, which the manifests'
# --registry-binary=registry finds on PATH. No shell, no package manager.
#
# Reproducible: the layer's file times and the image's dates are
# SOURCE_DATE_EPOCH (default: the commit time of HEAD, 0 outside git), and
# the builder's own label is left out. An archive whose inputs (files,
# labels, this script) are unchanged is not rebuilt.
#
# Runs as root: buildah with the vfs driver, its storage under
# BUILDDIR/images/.buildah (never /var/lib/containers).
# Environment: THAW_IMAGE_VERSION and THAW_IMAGE_LICENSES (meson passes its
# project's; else read from `meson introspect` and meson.build),
# THAW_IMAGE_SOURCE (the org.opencontainers.image.source label; default the
# git remote "origin", else "unknown"), THAW_REGISTRY_BIN (the registry
# binary, default /usr/bin/docker-registry).
set -euo pipefail

[ $# -eq 1 ] || { echo "usage: $0 BUILDDIR" >&2; exit 2; }
[ "$(id -u)" -eq 0 ] || { echo "$0: needs root (buildah, vfs driver)" >&2; exit 1; }
here=$(cd "$(dirname "$0")" && pwd)
top=$(dirname "$here")
build=$(cd "$1" && pwd)
out=$build/images
state=$out/.buildah
mkdir -p "$out"
exec 9>"$out/.lock"   # one build at a time per build dir (ninja, the test)
flock 9

version=${THAW_IMAGE_VERSION:-$(meson introspect "$build" --projectinfo |
  sed -n 's/.*"version": *"\([^"]*\)".*/\1/p')}
licenses=${THAW_IMAGE_LICENSES:-$(sed -n "s/^ *license *: *'\([^']*\)'.*/\1/p" "$top/meson.build")}
[ -n "$version" ] && [ -n "$licenses" ] || { echo "$0: no version or license" >&2; exit 1; }
revision=$(git -C "$top" rev-parse HEAD 2>/dev/null || echo unknown)
# Without user info: a clone URL may carry a token, a label must not.
source_url=${THAW_IMAGE_SOURCE:-$(git -C "$top" config --get remote.origin.url 2>/dev/null |
  sed 's#^\([a-z+]*://\)[^/@]*@#\1#' || true)}
source_url=${source_url:-unknown}
epoch=${SOURCE_DATE_EPOCH:-$(git -C "$top" log -1 --format=%ct 2>/dev/null || echo 0)}
registry_bin=${THAW_REGISTRY_BIN:-/usr/bin/docker-registry}
arch=$(uname -m)
case $arch in x86_64) arch=amd64 ;; aarch64) arch=arm64 ;; esac

B=(buildah --root "$state/storage" --runroot "$state/run" --storage-driver vfs)
policy=$state/policy.json   # commit checks a signature policy; ours accepts all
mkdir -p "$state"
echo '{"default":[{"type":"insecureAcceptAnything"}]}' > "$policy"

# add ROOT PATH: the host's PATH at the same place under ROOT. Each symlink
# met on the way (a directory such as /lib -> usr/lib, a soname link) is
# made the same symlink, then followed; the regular file at the end is
# copied with its mode. Directories are made 0755.
add() {
  local root=$1 path=$2 depth=${3:-0} prefix="" rest comp cur target
  [ "$depth" -lt 16 ] || { echo "$0: symlink loop at $path" >&2; return 1; }
  rest=${path#/}
  while [ -n "$rest" ]; do
    comp=${rest%%/*}
    if [ "$comp" = "$rest" ]; then rest=""; else rest=${rest#*/}; fi
    cur=$prefix/$comp
    if [ -L "$cur" ]; then
      target=$(readlink "$cur")
      [ -L "$root$cur" ] || ln -s "$target" "$root$cur"
      case $target in /*) ;; *) target=$prefix/$target ;; esac
      add "$root" "$(realpath -ms "$target${rest:+/$rest}")" $((depth + 1))
      return
    elif [ -n "$rest" ]; then
      [ -d "$root$cur" ] || install -d -m 0755 "$root$cur"
    else
      cp --preserve=mode "$cur" "$root$cur"
    fi
    prefix=$cur
  done
}

# libs BINARY...: the shared objects the dynamic linker loads for them
# (the loader included), as ldd names them; fails on "not found".
libs() {
  local b
  for b in "$@"; do
    if ldd "$b" | grep -q 'not found'; then
      echo "$0: $b: a library is missing:" >&2; ldd "$b" >&2; return 1
    fi
    ldd "$b" | awk '$2 == "=>" && $3 ~ /^\// {print $3} $1 ~ /^\// {print $1}'
  done | sort -u
}

# image NAME DESCRIPTION PORTS BINARY [EXTRA...]
# EXTRA is HOST_PATH:IMAGE_PATH (a program copied unchanged, e.g. Debian's)
# or HOST_PATH:IMAGE_PATH:strip (one of ours: debug info stripped, as the
# daemon is). Their libraries come along too.
image() {
  local name=$1 desc=$2 ports=$3 bin=$4; shift 4
  local archive=$out/$name-$version.oci.tar ref=thaw/$name:$version
  local extra=("$@") e dst
  local hosts=("$bin")
  for e in "${extra[@]}"; do hosts+=("${e%%:*}"); done
  local lib_list
  lib_list=$(libs "${hosts[@]}")

  # What goes in, and how: rebuilt only when this changes.
  local key
  key=$( { printf '%s\n' "$name" "$desc" "$ports" "$version" "$licenses" "$revision" \
             "$source_url" "$epoch" "$arch" "${extra[@]}"
           sha256sum "$0" "$bin" "${hosts[@]}" /etc/ssl/certs/ca-certificates.crt
           for l in $lib_list; do sha256sum "$(readlink -f "$l")"; printf '%s\n' "$l"; done
         } | sha256sum | cut -d' ' -f1)
  if [ -f "$archive" ] && [ "$(cat "$out/.$name.key" 2>/dev/null)" = "$key" ]; then
    echo "images: $name up to date ($archive)"
    return
  fi

  "${B[@]}" rm "thaw-img-$name" >/dev/null 2>&1 || true
  local ctr mnt
  ctr=$("${B[@]}" from --name "thaw-img-$name" scratch)
  mnt=$("${B[@]}" mount "$ctr")

  install -d -m 0755 "$mnt/usr/bin" "$mnt/etc/ssl/certs"
  strip --strip-debug -o "$mnt/usr/bin/$name" "$bin"
  chmod 0755 "$mnt/usr/bin/$name"
  for e in "${extra[@]}"; do
    dst=${e#*:}
    case $dst in
      *:strip) strip --strip-debug -o "$mnt${dst%:strip}" "${e%%:*}"
               chmod 0755 "$mnt${dst%:strip}" ;;
      *) install -m 0755 "${e%%:*}" "$mnt$dst" ;;
    esac
  done
  for l in $lib_list; do add "$mnt" "$l"; done
  install -m 0644 /etc/ssl/certs/ca-certificates.crt "$mnt/etc/ssl/certs/"
  printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/nonexistent:/sbin/nologin\n' \
    > "$mnt/etc/passwd"
  printf 'root:x:0:\nnonroot:x:65532:\n' > "$mnt/etc/group"
  printf 'passwd: files\ngroup: files\nhosts: files dns\n' > "$mnt/etc/nsswitch.conf"
  chmod 0644 "$mnt/etc/passwd" "$mnt/etc/group" "$mnt/etc/nsswitch.conf"
  "${B[@]}" umount "$ctr" >/dev/null

  local port_args=() p
  for p in $ports; do port_args+=(--port "$p/tcp"); done
  "${B[@]}" config --os linux --arch "$arch" --user 65532:65532 --workingdir / \
    --env PATH=/usr/bin --entrypoint "[\"/usr/bin/$name\"]" --cmd '' "${port_args[@]}" \
    --label "org.opencontainers.image.title=$name" \
    --label "org.opencontainers.image.description=$desc" \
    --label "org.opencontainers.image.version=$version" \
    --label "org.opencontainers.image.revision=$revision" \
    --label "org.opencontainers.image.source=$source_url" \
    --label "org.opencontainers.image.licenses=$licenses" \
    "$ctr"
  # An OCI layout first, then tarred with fixed names, order and times, so
  # that the archive's bytes (not only the image's digests) are reproducible.
  local layout=$state/layout-$name
  rm -rf "$layout"
  "${B[@]}" commit --quiet --rm --format oci --timestamp "$epoch" --identity-label=false \
    --disable-compression=false --signature-policy "$policy" \
    "$ctr" "oci:$layout:$ref" >/dev/null
  tar -C "$layout" --sort=name --mtime="@$epoch" --owner=0 --group=0 --numeric-owner \
    -cf "$archive.tmp" oci-layout index.json blobs
  mv "$archive.tmp" "$archive"
  rm -rf "$layout"
  echo "$key" > "$out/.$name.key"
  echo "images: built $archive"
}

image thaw-webhook "thaw's mutating admission webhook: points pods at cached images" \
  "9443 8080" "$build/webhook/thaw-webhook"
image thaw-controller "thaw's controller (warms, refreshes and expires the image cache) and thaw-node-forward" \
  "8081" "$build/controller/thaw-controller" \
  "$build/controller/thaw-node-forward:/usr/bin/thaw-node-forward:strip"
image thaw-registry-gc "thaw's registry garbage-collection agent, with the distribution registry" \
  "7440" "$build/controller/thaw-registry-gc" "$registry_bin:/usr/bin/registry"
