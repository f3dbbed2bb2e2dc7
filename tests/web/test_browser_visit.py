"""A whole video visit in Chromium: the patient and clinician pages, through the edge.

Everything the pages do goes over gRPC-web through the edge Envoy of a real
`telemesh up`, with dev-issuer JWTs; the call is a real WebRTC call between two pages
(fake camera and microphone). The test then checks the outcome through the edge as
well, independently of what the pages show.
"""

from __future__ import annotations

import json
import subprocess
import uuid
from pathlib import Path
from typing import Any

import grpc
import pytest

from telemesh.billing.v1 import billing_pb2, billing_pb2_grpc
from telemesh.identity.tokens import DevIssuer
from telemesh.session.v1 import session_pb2, session_pb2_grpc
from telemesh_tools.stack.process import ManagedProcess
from tests.support.harness import MeshUp
from tests.web.support import WEB, WEB_ORIGIN, edge_spki_sha256

pytestmark = pytest.mark.slow
VISIT_SCRIPT = Path(__file__).resolve().parent / "visit.mjs"


def run_visit(call: dict[str, Any], timeout: float = 240) -> tuple[list[dict[str, Any]], str]:
    done = subprocess.run(
        ["node", str(VISIT_SCRIPT), json.dumps(call)],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    events = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    return events, done.stderr


def test_a_whole_visit_in_the_browser(
    web_mesh: MeshUp, webapp: ManagedProcess, artifacts: Path, tmp_path: Path
) -> None:
    issuer = DevIssuer(web_mesh.home)
    patient_id, clinician_id = f"p-{uuid.uuid4().hex[:8]}", f"c-{uuid.uuid4().hex[:8]}"
    patient_token = issuer.mint(patient_id, "patient")
    events, stderr = run_visit(
        {
            "webDir": str(WEB),
            "webUrl": WEB_ORIGIN,
            "patientToken": patient_token,
            "clinicianToken": issuer.mint(clinician_id, "clinician"),
            "clinicianId": clinician_id,
            "spki": edge_spki_sha256(web_mesh),
            "userDataDir": str(tmp_path / "chromium-profile"),
            "artifacts": str(artifacts),
        }
    )
    failed = [event["failed"] for event in events if "failed" in event]
    results = [event["result"] for event in events if "result" in event]
    if failed or not results:
        pytest.fail(
            f"the visit failed: {json.dumps(failed, indent=2)}\n{stderr[-3000:]}\n"
            f"{webapp.logs()[-2000:]}\n{web_mesh.logs()}"
        )
    result = results[0]

    assert result["error"]["code"] == "NOT_FOUND", result["error"]
    assert result["error"]["reason"] == "CLINICIAN_NOT_FOUND", result["error"]
    assert result["preCall"]["state"] == "succeeded", result["preCall"]
    for side in ("patient", "clinician"):
        assert result["call"][side]["framesDecoded"] > 0, result["call"]
        assert result["call"][side]["connectionState"] == "connected", result["call"]
        assert Path(result["screenshots"][side]).stat().st_size > 0
    # The patient's stream dropped and resumed from its last sequence number: the ICE
    # restart offered meanwhile was replayed, answered, and the call went on.
    resume = result["resume"]
    assert resume["after"] != resume["before"], resume
    assert resume["patient"]["framesDecoded"] > result["call"]["patient"]["framesDecoded"], resume
    assert "hello from the clinician" in result["chat"]["patient"]
    assert "hello from the patient" in result["chat"]["clinician"]
    # A few seconds connected is below the lowest E/M threshold (medicare-em): the
    # visit's charge is a not-billable line at zero, and it is on the invoice all the same.
    assert result["charge"]["state"] == "NOT_BILLABLE", result["charge"]
    assert "0.00" in result["charge"]["text"], result["charge"]
    assert result["charge"]["callStatus"] == "ended", result["charge"]

    # What the pages showed is what the services recorded.
    metadata = (("authorization", f"Bearer {patient_token}"),)
    credentials = grpc.ssl_channel_credentials(web_mesh.ca_bundle.read_bytes())
    with grpc.secure_channel(web_mesh.edge_target, credentials) as channel:
        visit = (
            session_pb2_grpc.SessionServiceStub(channel)
            .GetVisit(session_pb2.GetVisitRequest(visit_id=result["visitId"]), metadata=metadata)
            .visit
        )
        charges = (
            billing_pb2_grpc.BillingServiceStub(channel)
            .ListCharges(
                billing_pb2.ListChargesRequest(patient_id=patient_id, visit_id=visit.visit_id),
                metadata=metadata,
            )
            .charges
        )
    assert visit.state == session_pb2.VISIT_STATE_COMPLETED
    assert visit.patient_location == session_pb2.PATIENT_LOCATION_HOME
    assert list(visit.diagnosis_codes) == ["J06.9"]
    # The browsers' connection-state reports made the visit's connected time.
    assert len(visit.connected_periods) >= 1, visit
    assert [c.state for c in charges] == [billing_pb2.CHARGE_STATE_NOT_BILLABLE]
    assert charges[0].amount.amount_minor == 0, charges[0]
