#!/usr/bin/env bash
# Prints the name of a Debian base image with Python 3.11, built from Debian packages
# (debootstrap, then `podman import`), for machines that reach no container registry:
#
#   make image BASE_IMAGE=$(scripts/base-image.sh)
#
# The image is named after a hash of what goes into it (the suite, the packages and
# RECIPE, which changes whenever the steps below do), so a change builds a new one. Its root filesystem is kept as a tarball
# in $TELEMESH_IMAGE_CACHE (default /var/tmp/telemesh-images, outside any checkout): a
# machine whose podman storage was emptied imports it again in seconds instead of
# running debootstrap (about a minute). Needs root (debootstrap) and podman.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
podman="$here/podman.sh"
cache=${TELEMESH_IMAGE_CACHE:-/var/tmp/telemesh-images}
suite=${DEBIAN_SUITE:-bookworm}
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
packages=python3,python3-venv
recipe=1  # bump when the steps below change what the image holds
key=$(echo "minbase $suite $packages $recipe" | sha256sum | cut -c1-16)
image=localhost/telemesh-base:$key
tarball=$cache/telemesh-base-$key.tar

mkdir -p "$cache"
exec 9>"$cache/telemesh-base.lock"
flock 9  # one builder at a time; the others find its result

if "$podman" image exists "$image"; then
  echo "$image"
  exit 0
fi
if [ ! -s "$tarball" ]; then
  for tool in debootstrap podman; do
    command -v "$tool" >/dev/null || { echo "base-image: $tool not found" >&2; exit 1; }
  done
  work=$(mktemp -d "$cache/rootfs.XXXXXX")
  trap 'rm -rf "$work"' EXIT
  echo "base-image: debootstrap $suite ($packages) from $mirror" >&2
  debootstrap --variant=minbase --include="$packages" "$suite" "$work/rootfs" "$mirror" \
    >"$work/debootstrap.log" 2>&1 || { tail -20 "$work/debootstrap.log" >&2; exit 1; }
  # What an image does not need: downloaded packages, package lists, documentation.
  rm -rf "$work"/rootfs/var/cache/apt/archives/*.deb "$work"/rootfs/var/cache/apt/*.bin \
    "$work"/rootfs/var/lib/apt/lists/* "$work"/rootfs/usr/share/doc \
    "$work"/rootfs/usr/share/man "$work"/rootfs/usr/share/locale "$work"/rootfs/var/log/*
  tar --numeric-owner -C "$work/rootfs" -cf "$work/rootfs.tar" .
  mv "$work/rootfs.tar" "$tarball"
fi
"$podman" import \
  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'CMD ["python3"]' \
  --quiet "$tarball" "$image" >/dev/null
echo "$image"
