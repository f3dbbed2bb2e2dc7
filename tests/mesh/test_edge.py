"""The edge Envoy as browsers and apps meet it: TLS, gRPC-web (a real Node client and
hand-framed HTTP/1.1), end-user JWTs, roles from the allow-list, CORS (the minute-long
stream is test_streams.py), and `telemesh up`/`down` themselves."""

from __future__ import annotations

import hashlib
import subprocess
import uuid
from typing import Any

import grpc
import pytest

from telemesh.consent.v1 import consent_pb2, consent_pb2_grpc
from telemesh.session.v1 import session_pb2, session_pb2_grpc
from telemesh_tools.stack.endpoints import alive, endpoints_path, telemesh_command
from tests.mesh.long_stream import AFFINITY_HEADER
from tests.support import grpcweb
from tests.support.flows import rid
from tests.support.harness import REPO, MeshUp, clean_env
from tests.support.mesh import MeshUnderTest

pytestmark = pytest.mark.usefixtures("long_stream")  # opened early (see conftest.py)
CONSENT = "telemesh.consent.v1.ConsentService"
SIGNALING = "telemesh.signaling.v1.SignalingService"
ALLOWED_ORIGIN = "http://localhost:5173"
EXPOSED = {"grpc-status", "grpc-message", "grpc-status-details-bin"}


def _node(
    mesh: MeshUnderTest, method: str, request: dict[str, Any], service: str = CONSENT, **extra: Any
) -> list[Any]:
    missing = grpcweb.node_missing()
    if missing:
        pytest.skip(missing)
    call = {
        "baseUrl": mesh.edge_url,
        "caFile": str(mesh.ca_bundle),
        "descriptorSet": str(mesh.descriptor_set()),
        "service": service,
        "method": method,
        "request": request,
        **extra,
    }
    return grpcweb.node_call(call)


def _bearer(mesh: MeshUnderTest, role: str, subject: str) -> dict[str, str]:
    return {"authorization": f"Bearer {mesh.token(role, subject)}"}


def test_grpc_web_unary_call_with_a_patients_token(mesh: MeshUnderTest) -> None:
    events = _node(
        mesh,
        "ListConsents",
        {"patientId": "p-web"},
        token=mesh.token("patient", "p-web"),
    )
    assert [next(iter(event)) for event in events] == ["message", "end"], events
    assert events[-1]["end"]["code"] == "OK"


def test_grpc_web_server_stream_with_a_patients_token(mesh: MeshUnderTest) -> None:
    """The patient joins the visit's signaling room over gRPC-web: the stream's first
    event says who they are in the room."""
    visit, join_tokens = mesh.ready_visit()
    events = _node(
        mesh,
        "JoinRoom",
        {"joinToken": join_tokens["patient"]},
        service=SIGNALING,
        token=mesh.token("patient", visit.patient_id),
        headers={AFFINITY_HEADER: visit.visit_id},
        maxMessages=1,
    )
    assert [next(iter(event)) for event in events] == ["message", "end"], events
    joined = events[0]["message"]["joined"]
    assert joined["visitId"] == visit.visit_id
    assert joined["role"] == "PARTICIPANT_ROLE_PATIENT"


def test_grpc_web_consent_watch_for_an_administrator(mesh: MeshUnderTest) -> None:
    events = _node(
        mesh,
        "WatchConsentChanges",
        {"patientId": "p-web-stream", "heartbeatInterval": "0.1s"},
        token=mesh.token("admin", "a-web"),
        maxMessages=3,
    )
    assert [next(iter(event)) for event in events] == ["message"] * 3 + ["end"], events


def test_without_a_token_the_edge_answers_unauthenticated(mesh: MeshUnderTest) -> None:
    events = _node(mesh, "ListConsents", {"patientId": "p-web"})
    assert events == [
        {"error": {"code": "UNAUTHENTICATED", "message": "Jwt is missing"}, "at": events[0]["at"]}
    ]
    request = consent_pb2.ListConsentsRequest(patient_id="p-web").SerializeToString()
    reply = grpcweb.post(mesh.edge_address, mesh.ca_bundle, f"/{CONSENT}/ListConsents", request, {})
    assert reply.grpc_status == grpc.StatusCode.UNAUTHENTICATED.value[0]


def test_a_forged_token_is_unauthenticated(mesh: MeshUnderTest) -> None:
    request = consent_pb2.ListConsentsRequest(patient_id="p-web").SerializeToString()
    reply = grpcweb.post(
        mesh.edge_address,
        mesh.ca_bundle,
        f"/{CONSENT}/ListConsents",
        request,
        {"authorization": "Bearer e30.e30.c2ln"},
    )
    assert reply.grpc_status == grpc.StatusCode.UNAUTHENTICATED.value[0]


def test_hand_framed_grpc_web_over_http_1_1(mesh: MeshUnderTest) -> None:
    with mesh.edge_channel() as channel:
        session_pb2_grpc.SessionServiceStub(channel).CreatePatient(
            session_pb2.CreatePatientRequest(
                request_id=rid(),
                patient=session_pb2.Patient(
                    patient_id="p-framed",
                    display_name="Pat Framed",
                    birth_date="1990-03-04",
                    email="framed@example.org",
                    phone="+1 555 0101",
                ),
            ),
            metadata=tuple(_bearer(mesh, "patient", "p-framed").items()),
            timeout=10,
        )
        granted = (
            consent_pb2_grpc.ConsentServiceStub(channel)
            .GrantConsent(
                consent_pb2.GrantConsentRequest(
                    request_id=rid(),
                    patient_id="p-framed",
                    category=consent_pb2.CONSENT_CATEGORY_TELEHEALTH,
                    text_version="2026-01",
                    text_sha256=hashlib.sha256(b"consent text").hexdigest(),
                    capture_method=consent_pb2.CAPTURE_METHOD_IN_APP,
                ),
                metadata=tuple(_bearer(mesh, "patient", "p-framed").items()),
                timeout=10,
            )
            .consent
        )
    request = consent_pb2.ListConsentsRequest(patient_id="p-framed").SerializeToString()
    reply = grpcweb.post(
        mesh.edge_address,
        mesh.ca_bundle,
        f"/{CONSENT}/ListConsents",
        request,
        _bearer(mesh, "patient", "p-framed"),
    )
    assert reply.http_status == 200
    assert reply.headers["content-type"].startswith("application/grpc-web")
    assert reply.grpc_status == 0, reply.grpc_message
    (message,) = reply.messages
    listed = consent_pb2.ListConsentsResponse.FromString(message).consents
    assert list(listed) == [granted]


def test_a_role_the_allow_list_does_not_name_is_denied_at_the_edge(mesh: MeshUnderTest) -> None:
    request = consent_pb2.CheckConsentRequest(patient_id="p-1").SerializeToString()
    reply = grpcweb.post(
        mesh.edge_address,
        mesh.ca_bundle,
        f"/{CONSENT}/CheckConsent",
        request,
        _bearer(mesh, "patient", "p-1"),
    )
    assert reply.grpc_status == grpc.StatusCode.PERMISSION_DENIED.value[0]


def test_grpc_over_http2_through_the_edge(mesh: MeshUnderTest) -> None:
    """The visit's clinician checks the patient's consent over HTTP/2 through the edge."""
    visit, _ = mesh.ready_visit()
    with mesh.edge_channel() as channel:
        reply = consent_pb2_grpc.ConsentServiceStub(channel).CheckConsent(
            consent_pb2.CheckConsentRequest(
                patient_id=visit.patient_id, category=consent_pb2.CONSENT_CATEGORY_TELEHEALTH
            ),
            metadata=tuple(_bearer(mesh, "clinician", visit.clinician_id).items()),
            timeout=10,
        )
    assert reply.decision == consent_pb2.DECISION_PERMIT


def test_a_clinician_without_a_visit_reaches_none_of_the_patients_consents(
    mesh: MeshUnderTest,
) -> None:
    """Issue 12, finding 1, through the edge: a clinician with no visit with the patient
    neither reads, checks, grants (sharing with a clinic included) nor revokes."""
    visit, _ = mesh.ready_visit()
    stranger = tuple(_bearer(mesh, "clinician", f"c-{uuid.uuid4().hex[:8]}").items())
    patient = visit.patient_id
    consent = consent_pb2_grpc.ConsentServiceStub
    session = session_pb2_grpc.SessionServiceStub

    def grant(category: consent_pb2.ConsentCategory.ValueType, clinic: str = "") -> Any:
        return lambda stub: stub.GrantConsent(
            consent_pb2.GrantConsentRequest(
                request_id=rid(),
                patient_id=patient,
                category=category,
                partner_clinic_id=clinic,
                text_version="2026-01",
                text_sha256=hashlib.sha256(b"consent text").hexdigest(),
            ),
            metadata=stranger,
            timeout=10,
        )

    attempts: dict[str, tuple[Any, Any]] = {
        "ListConsents": (
            consent,
            lambda stub: stub.ListConsents(
                consent_pb2.ListConsentsRequest(patient_id=patient), metadata=stranger, timeout=10
            ),
        ),
        "CheckConsent": (
            consent,
            lambda stub: stub.CheckConsent(
                consent_pb2.CheckConsentRequest(
                    patient_id=patient, category=consent_pb2.CONSENT_CATEGORY_TELEHEALTH
                ),
                metadata=stranger,
                timeout=10,
            ),
        ),
        "GrantConsent(telehealth)": (consent, grant(consent_pb2.CONSENT_CATEGORY_TELEHEALTH)),
        "GrantConsent(sharing)": (
            consent,
            grant(consent_pb2.CONSENT_CATEGORY_PARTNER_SHARING, "clinic-evil"),
        ),
        "RevokeConsent": (
            consent,
            lambda stub: stub.RevokeConsent(
                consent_pb2.RevokeConsentRequest(
                    request_id=rid(),
                    consent_id=str(uuid.uuid4()),
                    expected_version=1,
                ),
                metadata=stranger,
                timeout=10,
            ),
        ),
        "GetPatient": (
            session,
            lambda stub: stub.GetPatient(
                session_pb2.GetPatientRequest(patient_id=patient), metadata=stranger, timeout=10
            ),
        ),
    }
    with mesh.edge_channel() as channel:
        for name, (stub_type, call) in attempts.items():
            with pytest.raises(grpc.RpcError) as caught:
                call(stub_type(channel))
            assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED, name
        # The clinic named in the attempted grant learns nothing.
        clinic = tuple(_bearer(mesh, "partner", "clinic-evil").items())
        answer = consent(channel).CheckConsent(
            consent_pb2.CheckConsentRequest(
                patient_id=patient,
                category=consent_pb2.CONSENT_CATEGORY_PARTNER_SHARING,
                partner_clinic_id="clinic-evil",
            ),
            metadata=clinic,
            timeout=10,
        )
        assert answer.decision == consent_pb2.DECISION_DENY


def test_cors_preflight_from_an_allowed_origin_passes(mesh: MeshUnderTest) -> None:
    status, headers = grpcweb.preflight(
        mesh.edge_address,
        mesh.ca_bundle,
        f"/{CONSENT}/ListConsents",
        ALLOWED_ORIGIN,
        "authorization,content-type,x-grpc-web,x-user-agent",
    )
    assert status == 200
    assert headers["access-control-allow-origin"] == ALLOWED_ORIGIN
    assert "POST" in headers["access-control-allow-methods"]
    allowed = set(headers["access-control-allow-headers"].split(","))
    assert {"authorization", "content-type", "x-grpc-web", "x-user-agent"} <= allowed
    assert set(headers["access-control-expose-headers"].split(",")) >= EXPOSED
    # The call itself: a browser may read its status, error or not.
    for headers_sent in (_bearer(mesh, "patient", "p-cors"), {}):
        reply = grpcweb.post(
            mesh.edge_address,
            mesh.ca_bundle,
            f"/{CONSENT}/ListConsents",
            consent_pb2.ListConsentsRequest(patient_id="p-cors").SerializeToString(),
            {"origin": ALLOWED_ORIGIN, **headers_sent},
        )
        assert reply.headers["access-control-allow-origin"] == ALLOWED_ORIGIN
        assert set(reply.headers["access-control-expose-headers"].split(",")) >= EXPOSED


def test_cors_preflight_from_another_origin_does_not_pass(mesh: MeshUnderTest) -> None:
    status, headers = grpcweb.preflight(
        mesh.edge_address,
        mesh.ca_bundle,
        f"/{CONSENT}/ListConsents",
        "https://evil.example",
        "authorization,content-type,x-grpc-web",
    )
    assert "access-control-allow-origin" not in headers
    assert status != 200


def test_a_second_telemesh_up_in_the_same_home_is_refused(mesh: MeshUnderTest) -> None:
    done = subprocess.run(
        telemesh_command("up", "--edge-port", "0"),
        env=clean_env(mesh.home),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert "already runs here" in done.stdout


def test_telemesh_down_stops_everything(tmp_path_factory: pytest.TempPathFactory) -> None:
    """On a mesh of its own: the other tests share theirs."""
    mesh = MeshUp.start(tmp_path_factory.mktemp("down-home"))
    try:
        pids = list(mesh.endpoints["processes"].values())
        done = mesh.down()
        assert done.returncode == 0, done.stdout + done.stderr
        assert mesh.process.process is not None
        assert mesh.process.process.wait(30) == 0, mesh.process.logs()[-3000:]
        assert [pid for pid in pids if alive(pid)] == []
        assert not endpoints_path(mesh.home).exists()
    finally:
        mesh.stop()
