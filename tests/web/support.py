"""What the web tests need around the browser: the built apps, `telemesh up`, the web
server, and the edge's key for Chromium to trust."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import socket
import ssl
import subprocess
import sys
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from telemesh.stack.endpoints import ENDPOINTS_FILE
from telemesh.stack.process import ManagedProcess
from tests.harness import REPO

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


def clean_env(home: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TELEMESH_", "OTEL_"))}
    env.update(TELEMESH_HOME=str(home), PYTHONUNBUFFERED="1", **extra)
    return env


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


@dataclass
class MeshUp:
    """`telemesh up` in a home of its own, as a developer runs it."""

    home: Path
    process: ManagedProcess
    endpoints: dict[str, Any]

    @classmethod
    def start(cls, home: Path, **env: str) -> MeshUp:
        process = ManagedProcess(
            "telemesh-up",
            [sys.executable, "-m", "telemesh.cli.main", "up", "--edge-port", "0"],
            clean_env(home, **env),
            home / "telemesh-up.log",
            cwd=REPO,
            ready=lambda: (home / ENDPOINTS_FILE).exists(),
        )
        process.start()
        try:
            process.wait_ready(timeout=120)
        except BaseException:
            process.stop(timeout=60)
            raise
        endpoints = json.loads((home / ENDPOINTS_FILE).read_text())
        return cls(home, process, endpoints)

    @property
    def edge_url(self) -> str:
        return str(self.endpoints["edge"]["url"])

    @property
    def edge_target(self) -> str:
        return f"localhost:{self.endpoints['edge']['address'].rsplit(':', 1)[1]}"

    @property
    def ca_bundle(self) -> Path:
        return Path(self.endpoints["ca_bundle"])

    def edge_spki_sha256(self) -> str:
        """Base64 SHA-256 of the public key the edge serves (Chromium's SPKI pin)."""
        host, port = self.endpoints["edge"]["address"].rsplit(":", 1)
        context = ssl.create_default_context(cafile=str(self.ca_bundle))
        with (
            socket.create_connection((host, int(port)), timeout=5) as raw,
            context.wrap_socket(raw, server_hostname="localhost") as tls,
        ):
            der = tls.getpeercert(binary_form=True)
        assert der is not None
        spki = (
            x509.load_der_x509_certificate(der)
            .public_key()
            .public_bytes(
                serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )
        return base64.b64encode(hashlib.sha256(spki).digest()).decode()

    def logs(self) -> str:
        folder = Path(self.endpoints.get("logs", self.home / "mesh" / "logs"))
        parts = [self.process.logs()[-3000:]]
        parts += [
            f"--- {p.name}\n{p.read_text(errors='replace')[-3000:]}" for p in folder.glob("*.log")
        ]
        return "\n".join(parts)

    def stop(self) -> None:
        self.process.stop(timeout=60)


def start_webapp(home: Path, dist: Path) -> ManagedProcess:
    """`python -m telemesh.webapp` serving `dist`, naming the edge of `home`'s stack."""

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
            "telemesh.webapp",
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
