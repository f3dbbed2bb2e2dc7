"""What the web tests need around the browser: the built apps, `telemesh up`, the web
server, and the edge's key for Chromium to trust."""

from __future__ import annotations

import base64
import hashlib
import shutil
import subprocess
import sys
import urllib.request
from pathlib import Path

from cryptography.hazmat.primitives import serialization

from telemesh_tools.stack.process import ManagedProcess
from tests.support.harness import REPO, MeshUp, clean_env

WEB = REPO / "web"
CHROMIUM = Path("/usr/bin/chromium")
# The origin the pages are served from: one the edge's CORS policy allows
# (mesh/allowlist.yaml), so the test exercises the real policy.
WEB_PORT = 5173
WEB_ORIGIN = f"http://localhost:{WEB_PORT}"


def missing_tools() -> str | None:
    """Why the browser test cannot run here, or None (scripts/setup.sh installs all)."""
    if shutil.which("node") is None:
        return "node is not installed"
    if not (WEB / "node_modules" / "playwright-core").is_dir():
        return "web/node_modules is missing: run scripts/setup.sh (npm ci in web/)"
    if not CHROMIUM.exists():
        return "Debian's chromium is not installed: run scripts/setup.sh"
    return None


def npm_bin(name: str) -> str:
    return str(WEB / "node_modules" / ".bin" / name)


def build_web(out: Path) -> None:
    """The apps as they are now, built into `out` (not web/dist: a test changes nothing)."""
    done = subprocess.run(
        [npm_bin("vite"), "build", "--outDir", str(out), "--emptyOutDir", "--logLevel", "warn"],
        cwd=WEB,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, f"vite build failed:\n{done.stdout}\n{done.stderr}"


def edge_spki_sha256(mesh: MeshUp) -> str:
    """Base64 SHA-256 of the public key the edge serves (Chromium's SPKI pin)."""
    spki = (
        mesh.edge_certificate()
        .public_key()
        .public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    return base64.b64encode(hashlib.sha256(spki).digest()).decode()


def start_webapp(home: Path, dist: Path) -> ManagedProcess:
    """`python -m telemesh_tools.webapp` serving `dist`, naming the edge of `home`'s stack."""

    def ready() -> bool:
        try:
            with urllib.request.urlopen(f"{WEB_ORIGIN}/config.json", timeout=1) as reply:
                return bool(reply.status == 200)
        except OSError:
            return False

    process = ManagedProcess(
        "webapp",
        [
            sys.executable,
            "-m",
            "telemesh_tools.webapp",
            "--listen",
            f"127.0.0.1:{WEB_PORT}",
            "--dist",
            str(dist),
        ],
        clean_env(home),
        home / "webapp.log",
        cwd=REPO,
        ready=ready,
    )
    process.start()
    try:
        process.wait_ready(timeout=20)
    except BaseException:
        process.stop()
        raise
    return process
