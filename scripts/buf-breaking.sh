#!/usr/bin/env bash
# `buf breaking` (FILE rules, buf.yaml) of protos/ against every released contract: the
# images committed in protos/releases/ (v1.0.0.binpb, ...). A release is an image in the
# repository, not a git tag, so the check works in any clone. Usage: [PROTOS_DIR]
# (default: this repository's module; the tests pass an edited copy).
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
input=${1:-$repo}
shopt -s nullglob
images=("$repo"/protos/releases/v*.binpb)
if [ ${#images[@]} -eq 0 ]; then
  echo "buf breaking: no release image in protos/releases/ yet" >&2
  exit 1
fi
status=0
for image in "${images[@]}"; do
  release=$(basename "$image" .binpb)
  if "$repo/.venv/bin/buf" breaking "$input" --against "$image"; then
    echo "buf breaking: compatible with $release"
  else
    echo "buf breaking: BREAKS $release (see above)" >&2
    status=1
  fi
done
exit $status
