#!/usr/bin/env bash
# `buf breaking` against the newest release tag v*: the contract partners hold. Before
# the first release there is nothing to hold v1 to, and the check says so.
set -euo pipefail
cd "$(dirname "$0")/.."
tag=$(git tag --list 'v*' --sort=-version:refname | head -n 1)
if [ -z "$tag" ]; then
  echo "buf breaking: no release tag v* yet; v1 may still change"
  exit 0
fi
echo "buf breaking: against $tag"
.venv/bin/buf breaking --against ".git#tag=$tag"
