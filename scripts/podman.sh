#!/usr/bin/env bash
# `podman` with the settings in scripts/containers.conf (or $CONTAINERS_CONF when set).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
export CONTAINERS_CONF=${CONTAINERS_CONF:-$here/containers.conf}
exec podman "$@"
