"""The published contract: buf lint, fresh generated code, and the API conventions."""

from __future__ import annotations

import filecmp
import subprocess
from pathlib import Path

import pytest
from google.protobuf.descriptor import FieldDescriptor, FileDescriptor, MethodDescriptor

from telemesh.billing.v1 import billing_pb2
from telemesh.consent.v1 import consent_pb2
from telemesh.phi import phi_paths
from telemesh.session.v1 import session_pb2
from telemesh.signaling.v1 import signaling_pb2
from tests.support.harness import REPO

FILES: list[FileDescriptor] = [
    session_pb2.DESCRIPTOR,
    signaling_pb2.DESCRIPTOR,
    consent_pb2.DESCRIPTOR,
    billing_pb2.DESCRIPTOR,
]
METHODS: list[MethodDescriptor] = [
    method
    for file in FILES
    for service in file.services_by_name.values()
    for method in service.methods
]

# Mutating RPCs whose idempotency key is something other than request_id, or that
# change nothing a retry could double. Each says why.
NOT_REQUEST_ID = {
    # Idempotent on the visit id: one charge per visit, whoever delivers it.
    "telemesh.billing.v1.BillingService.RecordVisitCompletion",
    # Issues a fresh short-lived token; nothing is stored that a retry could double.
    "telemesh.session.v1.SessionService.IssueJoinToken",
    # Server streams that only read (plus an audit entry per check).
    "telemesh.signaling.v1.SignalingService.JoinRoom",
    "telemesh.consent.v1.ConsentService.WatchConsentChanges",
    # A check writes only its audit entry; a retry is a second check, audited as such.
    "telemesh.consent.v1.ConsentService.CheckConsent",
}


def _is_read_only(method: MethodDescriptor) -> bool:
    options = method.GetOptions()
    return bool(options.idempotency_level == options.NO_SIDE_EFFECTS)


def test_buf_lint_is_clean() -> None:
    result = subprocess.run(
        [str(REPO / ".venv/bin/buf"), "lint"], cwd=REPO, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_generated_code_is_fresh(tmp_path: Path) -> None:
    """gen/python is exactly what `make gen` makes from protos/ (run it after a change)."""
    out = tmp_path / "gen"
    subprocess.run([str(REPO / "scripts/gen.sh"), str(out)], cwd=REPO, check=True)
    committed = REPO / "gen/python"
    fresh = sorted(p.relative_to(out) for p in out.rglob("*") if p.is_file())
    current = sorted(
        p.relative_to(committed)
        for p in committed.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    )
    assert fresh == current, "generated files differ in name: run `make gen`"
    stale = [str(p) for p in fresh if not filecmp.cmp(out / p, committed / p, shallow=False)]
    assert not stale, f"stale generated code, run `make gen`: {stale}"


@pytest.mark.parametrize("method", METHODS, ids=lambda m: m.full_name)
def test_mutating_rpcs_take_a_request_id(method: MethodDescriptor) -> None:
    if _is_read_only(method) or method.full_name in NOT_REQUEST_ID:
        return
    assert "request_id" in method.input_type.fields_by_name, method.full_name


@pytest.mark.parametrize("method", METHODS, ids=lambda m: m.full_name)
def test_lists_page(method: MethodDescriptor) -> None:
    if not method.name.startswith("List"):
        return
    request = method.input_type.fields_by_name
    response = method.output_type.fields_by_name
    assert {"page_size", "page_token"} <= set(request), method.full_name
    assert "next_page_token" in response, method.full_name


@pytest.mark.parametrize("method", METHODS, ids=lambda m: m.full_name)
def test_no_client_streaming(method: MethodDescriptor) -> None:
    assert not method.client_streaming


def test_profiles_mark_their_phi() -> None:
    for message in (session_pb2.Patient, session_pb2.Clinician):
        assert {"display_name", "birth_date", "email", "phone"} <= phi_paths(message.DESCRIPTOR)
    assert "patient.email" in phi_paths(session_pb2.CreatePatientRequest.DESCRIPTOR)


def test_ids_and_codes_are_not_phi() -> None:
    visit = session_pb2.Visit.DESCRIPTOR
    assert not phi_paths(visit)
    assert not phi_paths(billing_pb2.Charge.DESCRIPTOR)
    field: FieldDescriptor = session_pb2.Patient.DESCRIPTOR.fields_by_name["patient_id"]
    assert field.name not in phi_paths(session_pb2.Patient.DESCRIPTOR)
