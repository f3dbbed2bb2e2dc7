#!/usr/bin/env bash
# `make image`: the one Telemesh image (the four services, the outbox relay, the
# `telemesh` command), built with podman from a wheelhouse made here on the host.
#
#   BASE_IMAGE  the Python 3.11 base (default: the Containerfile's python:3.11-slim);
#               where no registry is reachable: BASE_IMAGE=$(scripts/base-image.sh)
#   IMAGE       the name to give it (default telemesh/telemesh:<version>, the name the
#               Kubernetes manifests in mesh/istio/ run)
#
# The container build needs no network: pip builds every wheel here (the pinned
# dependencies of pyproject.toml, and their dependencies at the versions installed in
# .venv, which the tests ran with) and the Containerfile installs them with --no-index.
# Prints the image's name and size last.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
podman="$root/scripts/podman.sh"
python=${PYTHON:-.venv/bin/python}
version=$("$python" -c 'import tomllib; print(tomllib.load(open("pyproject.toml", "rb"))["project"]["version"])')
image=${IMAGE:-telemesh/telemesh:$version}
out=build/image
command -v podman >/dev/null || { echo "build-image: podman not found (scripts/setup.sh installs it)" >&2; exit 1; }

rm -rf "$out"
mkdir -p "$out/src" "$out/wheelhouse"
# The package from the working tree (tracked and new files, nothing ignored), copied so
# that no stale build/ folder of setuptools leaks deleted modules into the wheel.
git ls-files -z --cached --others --exclude-standard -- \
    pyproject.toml setup.py README.md telemesh telemesh_tools 'svc_*' gen/python \
  | xargs -0 -I{} sh -c 'test ! -e "{}" || echo "{}"' \
  | tar -cf - -T - | tar -C "$out/src" -xf -
"$python" -m pip freeze --exclude-editable >"$out/constraints.txt"
echo "build-image: wheelhouse (pip wheel, on the host)" >&2
PYTHONWARNINGS=ignore "$python" -m pip wheel --quiet --wheel-dir "$out/wheelhouse" \
  --constraint "$out/constraints.txt" "./$out/src" 2> >(grep -v '^WARNING: Location' >&2)

# No intermediate images are kept (--layers=false): the wheelhouse changes with every
# change to the code, so a cached install step would hardly ever be reused.
args=(--tag "$image" --file Containerfile --layers=false)
if [ -n "${BASE_IMAGE:-}" ]; then
  args+=(--build-arg "BASE_IMAGE=$BASE_IMAGE")
fi
echo "build-image: podman build $image${BASE_IMAGE:+ from $BASE_IMAGE}" >&2
previous=$("$podman" image inspect --format '{{.Id}}' "$image" 2>/dev/null || true)
"$podman" build --quiet "${args[@]}" --build-arg "VERSION=$version" . >/dev/null
current=$("$podman" image inspect --format '{{.Id}}' "$image")
if [ -n "$previous" ] && [ "$previous" != "$current" ]; then
  # The image this name held before, unless a container or another name still uses it.
  "$podman" rmi "$previous" >/dev/null 2>&1 || true
fi
size=$("$podman" image inspect --format '{{.Size}}' "$image")
echo "$image $(( size / 1000000 )) MB"
