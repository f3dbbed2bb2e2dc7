"""One real local mesh for the mesh tests: `telemesh up` as a child process.

The tests talk to it the way services, browsers and attackers would: through a
service's sidecar outbound socket (that service's identity), straight at a sidecar's
inbound mTLS port (with whatever certificate the test makes), and through the edge
(gRPC, hand-framed gRPC-web, and a real gRPC-web client in Node).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import socket
import ssl
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
from cryptography import x509

from telemesh.identity.tokens import DevIssuer
from telemesh.mesh.ca import IssuedIdentity, LocalCA, ca_folder, spiffe_id
from telemesh.stack.endpoints import ENDPOINTS_FILE
from telemesh.stack.envoy import stats
from telemesh.stack.process import ManagedProcess
from tests.flows import Flows, Visit
from tests.harness import REPO, Stack
from tests.mesh.contract import write_descriptor_set

TRUST_DOMAIN = "telemesh.local"
NAMESPACE = "telemesh"
# Short-lived certificates: `telemesh up` renews them every ~10 s while the tests run.
CERT_TTL_SECONDS = 20
H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"


def clean_env(home: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TELEMESH_", "OTEL_"))}
    env.update(TELEMESH_HOME=str(home), PYTHONUNBUFFERED="1", **extra)
    return env


def telemesh_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "telemesh.cli.main", *args]


@dataclass
class Handshake:
    """What a raw TLS client saw: whether HTTP/2 answered, or the error it got."""

    answered: bool
    error: str
    peer_serial: int | None


class _ThroughTheEdge(Stack):
    """The end-user side of a visit, every call through the edge (tests.flows steps)."""

    def __init__(self, mesh: MeshUnderTest) -> None:
        super().__init__(mesh.home, "sqlite")
        self.mesh = mesh

    def channel(self, name: str) -> grpc.aio.Channel:
        credentials = grpc.ssl_channel_credentials(self.mesh.ca_bundle.read_bytes())
        return grpc.aio.secure_channel(self.mesh.edge_target, credentials)


class MeshUnderTest:
    """The running stack, its endpoints, and helpers to reach it."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.process = ManagedProcess(
            "telemesh-up",
            telemesh_command("up", "--edge-port", "0"),
            clean_env(home, TELEMESH_CERT_TTL_SECONDS=str(CERT_TTL_SECONDS)),
            home / "telemesh-up.log",
            cwd=REPO,
            ready=lambda: (home / ENDPOINTS_FILE).exists(),
        )
        self.endpoints: dict[str, Any] = {}
        self.issuer = DevIssuer(home)
        self.first_edge_serial: int | None = None

    def start(self) -> MeshUnderTest:
        self.process.start().wait_ready(timeout=120)
        self.endpoints = json.loads((self.home / ENDPOINTS_FILE).read_text())
        self.first_edge_serial = self.edge_serial()
        return self

    def edge_serial(self) -> int:
        """The serial number of the certificate the edge serves now."""
        context = ssl.create_default_context(cafile=str(self.ca_bundle))
        host, port = self.edge_address.rsplit(":", 1)
        with (
            socket.create_connection((host, int(port)), timeout=5) as raw,
            context.wrap_socket(raw, server_hostname="localhost") as tls,
        ):
            der = tls.getpeercert(binary_form=True)
        assert der is not None
        return x509.load_der_x509_certificate(der).serial_number

    def down(self) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            telemesh_command("down"),
            env=clean_env(self.home),
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=90,
        )

    # --- addresses --------------------------------------------------------------------

    @property
    def ca_bundle(self) -> Path:
        return Path(self.endpoints["ca_bundle"])

    @property
    def edge_address(self) -> str:
        return str(self.endpoints["edge"]["address"])

    @property
    def edge_url(self) -> str:
        return str(self.endpoints["edge"]["url"])

    def inbound(self, service: str) -> tuple[str, int]:
        host, port = self.endpoints["services"][service]["inbound"].rsplit(":", 1)
        return host, int(port)

    def sidecar_admin_port(self, service: str) -> int:
        return int(self.endpoints["services"][service]["sidecar_admin"].rsplit(":", 1)[1])

    def sidecar_stats(self, service: str, pattern: str) -> dict[str, int]:
        return stats(self.sidecar_admin_port(service), pattern)

    def identity_dir(self, service: str) -> Path:
        return Path(self.endpoints["services"][service]["identity_dir"])

    def logs(self) -> str:
        folder = Path(self.endpoints.get("logs", self.home / "mesh" / "logs"))
        parts = [self.process.logs()]
        parts += [
            f"--- {p.name}\n{p.read_text(errors='replace')[-3000:]}" for p in folder.glob("*.log")
        ]
        return "\n".join(parts)

    # --- callers ----------------------------------------------------------------------

    def as_service(self, service: str) -> grpc.Channel:
        """A channel through `service`'s sidecar outbound socket: calls carry its identity."""
        return grpc.insecure_channel(self.endpoints["services"][service]["outbound"])

    @property
    def edge_target(self) -> str:
        """The edge by name: its certificate names localhost."""
        return f"localhost:{self.edge_address.rsplit(':', 1)[1]}"

    def edge_channel(self) -> grpc.Channel:
        """A gRPC (HTTP/2) channel to the edge, trusting the local CA."""
        credentials = grpc.ssl_channel_credentials(self.ca_bundle.read_bytes())
        return grpc.secure_channel(self.edge_target, credentials)

    def ready_visit(self) -> tuple[Visit, dict[str, str]]:
        """A visit booked, consented and checked in through the edge, and both
        participants' join tokens ("patient", "clinician")."""

        async def steps() -> tuple[Visit, dict[str, str]]:
            flows = Flows(_ThroughTheEdge(self))
            try:
                visit = await flows.ready_visit()
                tokens = {
                    role: await flows.join_token(visit, role) for role in ("patient", "clinician")
                }
            finally:
                await flows.close()
            return visit, tokens

        return asyncio.run(steps())

    def descriptor_set(self) -> Path:
        """The contract as a binary FileDescriptorSet, for the Node client."""
        path = self.home / "contract.binpb"
        if not path.exists():
            write_descriptor_set(path)
        return path

    def token(self, role: str, subject: str) -> str:
        return self.issuer.mint(subject, role)

    def ca(self) -> LocalCA:
        return LocalCA.load_or_create(ca_folder(self.home), TRUST_DOMAIN)

    def issue(self, service: str, trust_domain: str = TRUST_DOMAIN) -> IssuedIdentity:
        """A certificate from the mesh's own CA for any SPIFFE id."""
        return self.ca().issue(
            spiffe_id(trust_domain, NAMESPACE, service), dt.timedelta(minutes=10)
        )

    def handshake(self, service: str, identity: IssuedIdentity | None, folder: Path) -> Handshake:
        """A raw TLS 1.3 connection to `service`'s inbound port with `identity` (or none),
        then the HTTP/2 preface: an accepted client gets the server's SETTINGS back."""
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False  # SPIFFE certificates name no host
        context.load_verify_locations(self.ca_bundle)
        context.set_alpn_protocols(["h2"])
        if identity is not None:
            cert, key = folder / "client.pem", folder / "client-key.pem"
            cert.write_bytes(identity.certificate_pem)
            key.write_bytes(identity.private_key_pem)
            context.load_cert_chain(cert, key)
        serial = None
        try:
            with (
                socket.create_connection(self.inbound(service), timeout=5) as raw,
                context.wrap_socket(raw) as tls,
            ):
                peer = tls.getpeercert(binary_form=True)
                if peer is not None:
                    serial = x509.load_der_x509_certificate(peer).serial_number
                tls.sendall(H2_PREFACE)
                data = tls.recv(64)
                return Handshake(bool(data), "" if data else "closed", serial)
        except (ssl.SSLError, OSError) as error:
            return Handshake(False, f"{type(error).__name__}: {error}", serial)
