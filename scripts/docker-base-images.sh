#!/usr/bin/env bash
# Builds, with podman, the base images docker/ needs, on a machine that cannot pull from
# a container registry (the development and CI machines): each one is made locally from
# the Debian mirror of the machine's own apt sources and stored under the tag the
# Dockerfiles use WITHOUT the digest (tests/e2e/test_docker_stack.py passes that tag as the
# BASE_IMAGE build argument). An image that already exists is kept, so a second run builds
# nothing; `podman rmi` of a tag below rebuilds it.
#
#   debian:bullseye-20260803-slim   debootstrap bullseye (minbase) + bullseye-security
#   python:3.11.15-slim-bookworm    stand-in: Debian 12's python3 (3.11) with a venv at
#                                   /usr/local on PATH, like the official image's layout
#   postgres:15.19-bookworm         stand-in: Debian 12's postgresql-15 behind an entry point
#                                   with the official image's variables and init directory
#                                   (docker/standin/)
# The stand-ins carry the label hotline.standin=1: they are not the official images.
# Usage: scripts/docker-base-images.sh   (root; podman, runc and debootstrap installed)
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=scripts/lib.sh
. "$repo/scripts/lib.sh"

BULLSEYE=docker.io/library/debian:bullseye-20260803-slim
BOOKWORM=localhost/hotline-standin/debian:bookworm-minbase
PYTHON=docker.io/library/python:3.11.15-slim-bookworm
POSTGRES=docker.io/library/postgres:15.19-bookworm
# crun refuses on these machines (hybrid cgroups); podman's default ulimits are refused too.
PODMAN=(podman --runtime runc)
BUILD_OPTS=(--network host --ulimit nofile=1024:1024 --ulimit nproc=1024:1024 --label hotline.standin=1)

read -r MIRROR SECURITY _keyring < <(debian_mirrors) || {
  echo "docker-base-images: no Debian mirror found in the apt sources" >&2
  exit 1
}

exists() { "${PODMAN[@]}" image exists "$1"; }

# debootstrap SUITE into a temporary folder, add the updates and security suites (the
# official images have them), trim apt's caches and import the tree as IMAGE.
bootstrap() { # bootstrap SUITE IMAGE
  local suite=$1 image=$2 dir
  dir=$(mktemp -d /var/tmp/hotline-debootstrap.XXXXXX)
  echo "docker-base-images: debootstrap $suite -> $image" >&2
  if ! nice -n 19 debootstrap --variant=minbase "$suite" "$dir" "$MIRROR" >"$dir.log" 2>&1; then
    tail -n 20 "$dir.log" >&2
    rm -rf "$dir" "$dir.log"
    return 1
  fi
  rm -f "$dir.log"
  cat >"$dir/etc/apt/sources.list" <<SOURCES
deb $MIRROR $suite main
deb $MIRROR $suite-updates main
deb $SECURITY $suite-security main
SOURCES
  rm -rf "$dir"/var/lib/apt/lists/* "$dir"/var/cache/apt/archives/*.deb
  tar -C "$dir" -c . | "${PODMAN[@]}" import --quiet \
    --change 'CMD ["bash"]' --change 'LABEL hotline.standin=1' - "$image" >/dev/null
  rm -rf "$dir"
}

build() { # build IMAGE DOCKERFILE BASE
  echo "docker-base-images: build $1" >&2
  nice -n 19 "${PODMAN[@]}" build "${BUILD_OPTS[@]}" --build-arg "BASE_IMAGE=$3" \
    -f "$2" -t "$1" "$repo/docker/standin" >/dev/null
}

exists "$BULLSEYE" || bootstrap bullseye "$BULLSEYE"
if ! exists "$PYTHON" || ! exists "$POSTGRES"; then
  exists "$BOOKWORM" || bootstrap bookworm "$BOOKWORM"
fi
exists "$PYTHON" || build "$PYTHON" "$repo/docker/standin/python.Dockerfile" "$BOOKWORM"
exists "$POSTGRES" || build "$POSTGRES" "$repo/docker/standin/postgres.Dockerfile" "$BOOKWORM"
echo "docker-base-images: $BULLSEYE $PYTHON $POSTGRES ready" >&2
