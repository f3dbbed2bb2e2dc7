#!/usr/bin/env bash
# Freezes the contract as it stands as release VERSION: a buf image with source info
# (comments included) in protos/releases/VERSION.binpb, which `make lint` then holds every
# later change to (scripts/buf-breaking.sh). Add the CHANGELOG entry in the same commit.
set -euo pipefail
cd "$(dirname "$0")/.."
version=${1:?usage: scripts/release-contract.sh vMAJOR.MINOR.PATCH}
[[ $version =~ ^v[0-9]+\.[0-9]+\.[0-9]+$ ]] || { echo "not a version: $version" >&2; exit 2; }
out=protos/releases/$version.binpb
[ ! -e "$out" ] || { echo "$out exists: a release is never rewritten" >&2; exit 1; }
grep -q "^## $version" protos/CHANGELOG.md || {
  echo "protos/CHANGELOG.md has no '## $version' entry" >&2
  exit 1
}
mkdir -p protos/releases
.venv/bin/buf build -o "$out"
echo "released $version: $out"
