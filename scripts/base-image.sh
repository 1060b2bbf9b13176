#!/bin/sh
# Builds the base image that install/Containerfile starts from when public registries are out of
# reach: a minimal Debian 12 made by mmdebstrap from this machine's own apt sources (the files are
# handed to mmdebstrap as they are, so the image uses the same archives as the host), imported
# into podman as localhost/int-host-reporter-base:bookworm.
#
# Cached: the tarball lives under $IHR_CACHE_DIR (default /var/cache/int-host-reporter), named by a
# hash of the apt sources, the package list and the mmdebstrap options; the imported image carries
# that hash as a label, so a second run neither bootstraps nor imports.
# Prints the image name on its last line.
set -eu

image=localhost/int-host-reporter-base:bookworm
suite=bookworm
# Beyond minbase (which already has them): what the runtime stage relies on, named so a change of
# Debian's defaults fails here rather than in the image. node needs libstdc++6 and libgcc-s1;
# entrypoint.sh runs on sh (dash); mount, to mount bpffs by hand when debugging a node.
packages="libstdc++6 libgcc-s1 dash mount"
# Like Debian's -slim images: no manuals, docs (but copyrights) or translations. The merged-usr
# hook lays out /usr itself; without it apt satisfies "usrmerge | usr-is-merged" with usrmerge,
# which pulls in perl (40 MB). The host's resolv.conf and hostname, copied in for the bootstrap,
# are not kept: podman supplies both.
options="--variant=minbase --format=tar --hook-dir=/usr/share/mmdebstrap/hooks/merged-usr
 --dpkgopt=path-exclude=/usr/share/man/* --dpkgopt=path-exclude=/usr/share/locale/*
 --dpkgopt=path-include=/usr/share/locale/locale.alias --dpkgopt=path-exclude=/usr/share/doc/*
 --dpkgopt=path-include=/usr/share/doc/*/copyright --dpkgopt=path-exclude=/usr/share/info/*"
cache=${IHR_CACHE_DIR:-/var/cache/int-host-reporter}

for tool in mmdebstrap podman; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    echo "base-image: $tool is missing (Debian package: $tool; scripts/setup.sh installs it)" >&2
    exit 1
  fi
done

# The machine's active apt sources (apt ignores other file names in sources.list.d).
set --
[ -f /etc/apt/sources.list ] && [ -n "$(grep -v '^\s*#' /etc/apt/sources.list | grep -v '^\s*$' || true)" ] \
  && set -- "$@" /etc/apt/sources.list
for f in /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
  [ -f "$f" ] && set -- "$@" "$f"
done
if [ $# -eq 0 ]; then
  echo "base-image: no apt sources found in /etc/apt" >&2
  exit 1
fi

key=$( { echo "$suite $packages $options"; for f in "$@"; do echo "== $f"; cat "$f"; done; } | sha256sum | cut -c1-16)
tarball=$cache/base-$suite-$key.tar

have=$(podman image inspect --format '{{ index .Labels "int-host-reporter.base-key" }}' "$image" 2>/dev/null || true)
if [ "$have" = "$key" ]; then
  echo "base-image: $image is up to date ($key)" >&2
  echo "$image"
  exit 0
fi

mkdir -p "$cache"
if [ ! -f "$tarball" ]; then
  echo "base-image: bootstrapping Debian $suite (minbase) with mmdebstrap from $*" >&2
  tmp=$tarball.tmp-$$
  trap 'rm -f "$tmp"' EXIT
  set -f # the options' globs are for dpkg, not for this shell
  # shellcheck disable=SC2086
  mmdebstrap $options --include="$packages" \
    --customize-hook='rm -f "$1/etc/resolv.conf" "$1/etc/hostname"' \
    "$suite" "$tmp" "$@" >&2
  set +f
  mv "$tmp" "$tarball"
  trap - EXIT
  # Tarballs of older keys are of no further use.
  for old in "$cache"/base-$suite-*.tar; do
    [ "$old" = "$tarball" ] || rm -f "$old"
  done
fi

echo "base-image: importing $tarball as $image" >&2
old=$(podman image inspect --format '{{.Id}}' "$image" 2>/dev/null || true)
podman import --quiet --change "LABEL int-host-reporter.base-key=$key" --change 'CMD ["/bin/bash"]' \
  "$tarball" "$image" >/dev/null
# The previous base of ours, now untagged; it stays while images built on it still use it.
[ -z "$old" ] || podman image rm "$old" >/dev/null 2>&1 || true
echo "$image"
