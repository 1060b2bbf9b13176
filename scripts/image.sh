#!/bin/sh
# `npm run image`: builds the container image from source with podman, on the base that
# scripts/base-image.sh makes from Debian packages (public registries are not needed), tagged
# localhost/int-host-reporter:<version of package.json>. A second run is fast: the base is cached,
# and podman reuses every layer whose inputs did not change. Prints the image's name and size last.
set -eu
cd "$(dirname "$0")/.."

if ! command -v podman >/dev/null 2>&1; then
  echo "image: podman is missing (Debian package: podman; scripts/setup.sh installs it)" >&2
  exit 1
fi

version=$(node -p 'require("./package.json").version')
image=localhost/int-host-reporter:$version
base=$(sh scripts/base-image.sh) # its name is all it prints on stdout

# The registry npm is configured with here (a mirror, if any), for node and npm in the build stage.
registry=$(npm config get registry 2>/dev/null || true)
registry=${registry%/}

# The machine's CA bundle, for TLS from the build stage (node, npm, npm ci): it may trust an
# intercepting proxy that the base's own bundle does not. A build secret: it stays out of the image.
ca=/etc/ssl/certs/ca-certificates.crt
[ -s "$ca" ] || ca=

# The versions of the libraries build.mjs rebuilds from the installed Debian versions' sources
# (libelf, zlib; libbpf's version is pinned in build.mjs): the image builds them from the same
# sources as this checkout does (the build stage would otherwise take the archive's newest, whose
# source a partial mirror may not serve).
pins=$(dpkg-query -W -f='${db:Status-Status} ${Package}=${Version}\n' \
  libelf1 libelf-dev zlib1g zlib1g-dev 2>/dev/null | sed -n 's/^installed //p' | tr '\n' ' ')

old=$(podman image inspect --format '{{.Id}}' "$image" 2>/dev/null || true)
start=$(date +%s)
podman build --layers --build-arg "BASE=$base" --build-arg "VERSION=$version" --build-arg "APT_PINS=$pins" \
  ${registry:+--build-arg "NPM_REGISTRY=$registry"} ${ca:+--secret "id=ca-certificates,src=$ca"} \
  -t "$image" -f install/Containerfile .
echo "image: built in $(( $(date +%s) - start )) s"

# The previous build, now untagged (kept if a container or another tag still uses it).
new=$(podman image inspect --format '{{.Id}}' "$image")
[ -z "$old" ] || [ "$old" = "$new" ] || podman image rm "$old" >/dev/null 2>&1 || true

# Build stages of earlier builds, left untagged (each holds compilers and sources, over 1 GB): all
# but the newest, which is this build's layer cache.
podman images --filter dangling=true --filter label=int-host-reporter.stage=build --sort created --format '{{.ID}}' \
  | tail -n +2 | while read -r id; do podman image rm "$id" >/dev/null 2>&1 || true; done

size=$(podman image inspect --format '{{.Size}}' "$new")
echo "image: $image size $size bytes ($(( (size + 524288) / 1048576 )) MiB)"
