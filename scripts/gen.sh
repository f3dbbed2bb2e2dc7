#!/usr/bin/env bash
# Regenerates the Python stubs and their typing stubs from protos/ into the folder given
# (gen/python by default). Never edit the output by hand: change the protos, run this.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-gen/python}
rm -rf "$out"
mkdir -p "$out"
PATH="$(pwd)/.venv/bin:$PATH" .venv/bin/python -m grpc_tools.protoc -Iprotos \
  --python_out="$out" --grpc_python_out="$out" \
  --mypy_out="$out" --mypy_grpc_out="$out" \
  $(cd protos && find . -name '*.proto' | sed 's|^\./||' | sort) 2>&1 \
  | { grep -v '^Writing mypy to' || true; }  # mypy-protobuf names every file it writes
