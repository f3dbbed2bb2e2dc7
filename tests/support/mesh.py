"""A real local mesh for the mesh and security tests: `telemesh up` as a child process.

The tests talk to it the way services, browsers and attackers would: through a
service's sidecar outbound socket (that service's identity), straight at a sidecar's
inbound mTLS port (with whatever certificate the test makes), and through the edge
(gRPC, hand-framed gRPC-web, and a real gRPC-web client in Node).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import json
import socket
import ssl
from dataclasses import dataclass, field
from pathlib import Path
from typing import Self

import grpc
from cryptography import x509

from telemesh.consent.v1 import consent_pb2, consent_pb2_grpc
from telemesh.identity.tokens import DevIssuer
from telemesh.session.v1 import session_pb2, session_pb2_grpc
from telemesh_tools.demo.run import edge_channel_factory
from telemesh_tools.demo.steps import Visit, VisitSteps
from telemesh_tools.mesh.ca import IssuedIdentity, LocalCA, ca_folder, spiffe_id
from telemesh_tools.stack.envoy import admin_get, stats
from tests.support.contract import write_descriptor_set
from tests.support.flows import rid
from tests.support.harness import MeshUp

TRUST_DOMAIN = "telemesh.local"
NAMESPACE = "telemesh"
# Short-lived certificates: `telemesh up` renews them every ~10 s while the tests run.
CERT_TTL_SECONDS = 20
H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"


@dataclass
class Handshake:
    """What a raw TLS client saw: whether HTTP/2 answered, or the error it got."""

    answered: bool
    error: str
    peer_serial: int | None


@dataclass
class MeshUnderTest(MeshUp):
    """The running stack, its endpoints, and helpers to reach it."""

    first_edge_serial: int | None = None
    issuer: DevIssuer = field(init=False)

    def __post_init__(self) -> None:
        self.issuer = DevIssuer(self.home)

    @classmethod
    def start(cls, home: Path, *up_args: str, **env: str) -> Self:
        mesh = super().start(home, *up_args, TELEMESH_CERT_TTL_SECONDS=str(CERT_TTL_SECONDS), **env)
        mesh.first_edge_serial = mesh.edge_serial()
        return mesh

    def edge_serial(self) -> int:
        """The serial number of the certificate the edge serves now."""
        return self.edge_certificate().serial_number

    # --- addresses --------------------------------------------------------------------

    def inbound(self, service: str) -> tuple[str, int]:
        host, port = self.endpoints["services"][service]["inbound"].rsplit(":", 1)
        return host, int(port)

    def sidecar_admin_port(self, service: str) -> int:
        return int(self.endpoints["services"][service]["sidecar_admin"].rsplit(":", 1)[1])

    def sidecar_stats(self, service: str, pattern: str) -> dict[str, int]:
        return stats(self.sidecar_admin_port(service), pattern)

    def sidecar_uptime(self, service: str) -> float:
        """Seconds the sidecar's Envoy has run (its admin /server_info, as of now)."""
        status, body = admin_get(self.sidecar_admin_port(service), "/server_info")
        assert status == 200, (status, body)
        return float(json.loads(body)["uptime_current_epoch"].removesuffix("s"))

    def identity_dir(self, service: str) -> Path:
        return Path(self.endpoints["services"][service]["identity_dir"])

    # --- callers ----------------------------------------------------------------------

    def as_service(self, service: str) -> grpc.Channel:
        """A channel through `service`'s sidecar outbound socket: calls carry its identity."""
        return grpc.insecure_channel(self.endpoints["services"][service]["outbound"])

    def edge_channel(self) -> grpc.Channel:
        """A gRPC (HTTP/2) channel to the edge, trusting the local CA."""
        credentials = grpc.ssl_channel_credentials(self.ca_bundle.read_bytes())
        return grpc.secure_channel(self.edge_target, credentials)

    def ready_visit(self) -> tuple[Visit, dict[str, str]]:
        """A visit booked, consented and checked in through the edge, and both
        participants' join tokens ("patient", "clinician")."""

        async def ready() -> tuple[Visit, dict[str, str]]:
            steps = VisitSteps(edge_channel_factory(self.endpoints), self.issuer)
            try:
                visit = await steps.ready_visit()
                tokens = {
                    role: await steps.join_token(visit, role) for role in ("patient", "clinician")
                }
            finally:
                await steps.close()
            return visit, tokens

        return asyncio.run(ready())

    def descriptor_set(self) -> Path:
        """The contract as a binary FileDescriptorSet, for the Node client."""
        path = self.home / "contract.binpb"
        if not path.exists():
            write_descriptor_set(path)
        return path

    def token(self, role: str, subject: str) -> str:
        return self.issuer.mint(subject, role)

    def patient_shares_with(self, patient_id: str, clinics: list[str]) -> list[str]:
        """Through the edge as the patient: a profile, a PARTNER_SHARING consent naming each
        clinic, and a telehealth consent. Returns the consent ids in that order."""
        metadata = (("authorization", f"Bearer {self.token('patient', patient_id)}"),)
        text = hashlib.sha256(b"partner sharing consent text").hexdigest()
        with self.edge_channel() as channel:
            session_pb2_grpc.SessionServiceStub(channel).CreatePatient(
                session_pb2.CreatePatientRequest(
                    request_id=rid(),
                    patient=session_pb2.Patient(
                        patient_id=patient_id,
                        display_name="Pat Partner",
                        birth_date="1975-06-07",
                        email="partner@example.org",
                        phone="+1 555 0102",
                    ),
                ),
                metadata=metadata,
                timeout=10,
            )
            consent = consent_pb2_grpc.ConsentServiceStub(channel)
            grants = [(consent_pb2.CONSENT_CATEGORY_PARTNER_SHARING, clinic) for clinic in clinics]
            return [
                consent.GrantConsent(
                    consent_pb2.GrantConsentRequest(
                        request_id=rid(),
                        patient_id=patient_id,
                        category=category,
                        partner_clinic_id=clinic,
                        text_version="2026-01",
                        text_sha256=text,
                        capture_method=consent_pb2.CAPTURE_METHOD_IN_APP,
                    ),
                    metadata=metadata,
                    timeout=10,
                ).consent.consent_id
                for category, clinic in [*grants, (consent_pb2.CONSENT_CATEGORY_TELEHEALTH, "")]
            ]

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
