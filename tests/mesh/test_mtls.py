"""Service to service through the real Envoy sidecars: mutual TLS, SPIFFE identities and
the allow-list. Every refusal is checked against Envoy's own counters, and logged with
the reason Envoy gives (a Python client sees only UNAVAILABLE)."""

from __future__ import annotations

import datetime as dt
import logging
import time
from pathlib import Path

import grpc
import pytest

from telemesh.billing.v1 import billing_pb2, billing_pb2_grpc
from telemesh.consent.v1 import consent_pb2, consent_pb2_grpc
from telemesh_tools.mesh.ca import LocalCA, spiffe_id
from telemesh_tools.mesh.identities import read_certificate, write_identity
from tests.support.mesh import NAMESPACE, TRUST_DOMAIN, MeshUnderTest

pytestmark = pytest.mark.usefixtures("long_stream")  # opened early (see conftest.py)
logger = logging.getLogger(__name__)
logger.setLevel(logging.INFO)  # the refusal reasons show with a failure
CLIENT_TTL = dt.timedelta(minutes=10)
SSL_REFUSALS = r"listener\.inbound\.ssl\.(fail_verify|connection_error)"


def _check(channel: grpc.Channel, patient: str) -> consent_pb2.CheckConsentResponse:
    reply: consent_pb2.CheckConsentResponse = consent_pb2_grpc.ConsentServiceStub(
        channel
    ).CheckConsent(
        consent_pb2.CheckConsentRequest(
            patient_id=patient, category=consent_pb2.CONSENT_CATEGORY_TELEHEALTH
        ),
        timeout=10,
    )
    return reply


def _refusals(mesh: MeshUnderTest, service: str) -> dict[str, int]:
    return mesh.sidecar_stats(service, SSL_REFUSALS)


def _new_refusals(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    changed = {name: value - before.get(name, 0) for name, value in after.items()}
    reasons = {name: delta for name, delta in changed.items() if delta}
    logger.info("Envoy's reason for the refusal: %s", reasons)
    return reasons


def test_an_allowed_caller_gets_its_answer(mesh: MeshUnderTest) -> None:
    """session -> consent.CheckConsent, through session's sidecar. No token is sent:
    consent answers because the sidecars proved the caller is the session service."""
    with mesh.as_service("session") as channel:
        reply = _check(channel, "p-mtls-allowed")
    assert reply.decision == consent_pb2.DECISION_DENY
    assert reply.reason == consent_pb2.DECISION_REASON_NO_RECORD


def test_a_caller_not_on_the_allow_list_gets_permission_denied(mesh: MeshUnderTest) -> None:
    before = mesh.sidecar_stats("consent", r"http\.inbound\.rbac\.denied")
    with mesh.as_service("billing") as channel, pytest.raises(grpc.RpcError) as caught:
        _check(channel, "p-mtls-denied")
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "RBAC" in (caught.value.details() or "")
    after = mesh.sidecar_stats("consent", r"http\.inbound\.rbac\.denied")
    assert after["http.inbound.rbac.denied"] == before.get("http.inbound.rbac.denied", 0) + 1
    # Allowed to call billing, but not this method of it.
    with mesh.as_service("session") as channel, pytest.raises(grpc.RpcError) as caught:
        billing_pb2_grpc.BillingServiceStub(channel).GetCharge(
            billing_pb2.GetChargeRequest(charge_id="c-1"), timeout=10
        )
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED


def test_a_client_certificate_from_the_mesh_ca_completes_the_handshake(
    mesh: MeshUnderTest, tmp_path: Path
) -> None:
    result = mesh.handshake("consent", mesh.issue("session"), tmp_path)
    assert result.answered, result.error


REFUSALS = {
    "no client certificate": "listener.inbound.ssl.fail_verify_no_cert",
    "a certificate from another CA": "listener.inbound.ssl.fail_verify_error",
    "a SPIFFE id outside the trust domain": "listener.inbound.ssl.fail_verify_san",
}


@pytest.mark.parametrize("case", list(REFUSALS))
def test_bad_client_certificates_are_refused_at_the_handshake(
    mesh: MeshUnderTest, tmp_path: Path, case: str
) -> None:
    if case == "no client certificate":
        identity = None
    elif case == "a certificate from another CA":
        key, certificate = LocalCA.create("Another CA", TRUST_DOMAIN)
        other = LocalCA(key, certificate, tmp_path)
        identity = other.issue(spiffe_id(TRUST_DOMAIN, NAMESPACE, "session"), CLIENT_TTL)
    else:
        identity = mesh.issue("session", trust_domain="elsewhere.example")
    before = _refusals(mesh, "consent")
    result = mesh.handshake("consent", identity, tmp_path)
    reasons = _new_refusals(before, _refusals(mesh, "consent"))
    assert not result.answered, "the sidecar spoke HTTP/2 to a client it should refuse"
    assert reasons.get(REFUSALS[case]) == 1, (result.error, reasons)


def test_plaintext_is_refused_at_the_handshake(mesh: MeshUnderTest) -> None:
    before = _refusals(mesh, "consent")
    host, port = mesh.inbound("consent")
    with grpc.insecure_channel(f"{host}:{port}") as channel, pytest.raises(grpc.RpcError) as caught:
        _check(channel, "p-plaintext")
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    reasons = _new_refusals(before, _refusals(mesh, "consent"))
    assert reasons.get("listener.inbound.ssl.connection_error", 0) >= 1, reasons


def test_a_certificate_rotated_on_disk_is_served_without_a_restart(
    mesh: MeshUnderTest, tmp_path: Path
) -> None:
    client = mesh.issue("session")
    first = mesh.handshake("consent", client, tmp_path)
    assert first.answered
    assert first.peer_serial is not None
    uptime = mesh.sidecar_uptime("consent")
    began = time.monotonic()
    rotated = mesh.ca().issue(spiffe_id(TRUST_DOMAIN, NAMESPACE, "consent"), CLIENT_TTL)
    folder = mesh.identity_dir("consent")
    write_identity(folder, rotated)
    # `telemesh up` renews certificates too (every ~10 s here): whichever file is on
    # disk now, that is the certificate Envoy must serve, without a restart.
    deadline = time.monotonic() + 10
    while True:
        served = mesh.handshake("consent", client, tmp_path)
        on_disk = read_certificate(folder).serial_number
        if served.peer_serial == on_disk and served.peer_serial != first.peer_serial:
            break
        assert time.monotonic() < deadline, "Envoy still serves the old certificate"
        time.sleep(0.2)
    assert served.answered
    # The same Envoy all along: a restarted one would have begun a new uptime (whole
    # seconds, rounded down: hence the second of slack).
    assert mesh.sidecar_uptime("consent") >= uptime + (time.monotonic() - began) - 1


def test_telemesh_up_renews_certificates_at_half_their_life(mesh: MeshUnderTest) -> None:
    """The edge's certificate (20 s here) is renewed by `telemesh up` about 10 s after
    start, while the other tests run: its serial comes to differ from the one served
    right after start."""
    deadline = time.monotonic() + 30
    while mesh.edge_serial() == mesh.first_edge_serial:
        assert time.monotonic() < deadline, "the edge still serves its first certificate"
        time.sleep(0.5)
