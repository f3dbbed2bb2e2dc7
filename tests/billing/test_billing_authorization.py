"""Who may call each BillingService RPC: the session service records completions; a
patient reads only their own charges, statements and claims; the billing role reads
all, marks billed and voids. Everyone else is PERMISSION_DENIED."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import grpc
import pytest

from telemesh.billing.v1 import billing_pb2
from telemesh.errors import reason_of
from tests.support.billing import Billing, Metadata, completion, new_id
from tests.support.errors import refused
from tests.support.flows import rid

OWNER = "owner"  # the patient the charge belongs to
CALLERS = [
    "session-service",
    "consent-service",
    OWNER,
    "other-patient",
    "clinician",
    "billing",
    "admin",
    "partner",
]
# RPC -> callers allowed; every other caller is PERMISSION_DENIED.
ALLOWED = {
    "RecordVisitCompletion": {"session-service"},
    "GetCharge": {OWNER, "billing", "admin"},
    "ListCharges": {OWNER, "billing", "admin"},
    "MarkChargeBilled": {"billing"},
    "VoidCharge": {"billing"},
    "GetPatientStatement": {OWNER, "billing", "admin"},
    "ExportClaim": {OWNER, "billing", "admin"},
}


def _metadata(billing: Billing, caller: str, owner: str) -> Metadata:
    tokens = billing.stack.tokens
    return {
        "session-service": billing.session,
        "consent-service": tokens.service("consent"),
        OWNER: tokens.patient(owner),
        "other-patient": tokens.patient(new_id("patient")),
        "clinician": tokens.clinician("clinician-1"),
        "billing": billing.billing,
        "admin": tokens.role("admin", "admin-1"),
        "partner": tokens.role("partner", "clinic-1"),
    }[caller]


def _call(
    billing: Billing, rpc: str, charge: billing_pb2.Charge
) -> Callable[[Metadata], Awaitable[Any]]:
    stub = billing.stub
    request_id = rid()
    requests: dict[str, Callable[[Metadata], Awaitable[Any]]] = {
        "RecordVisitCompletion": lambda md: stub.RecordVisitCompletion(
            completion(patient_id=charge.patient_id), metadata=md
        ),
        "GetCharge": lambda md: stub.GetCharge(
            billing_pb2.GetChargeRequest(charge_id=charge.charge_id), metadata=md
        ),
        "ListCharges": lambda md: stub.ListCharges(
            billing_pb2.ListChargesRequest(patient_id=charge.patient_id), metadata=md
        ),
        "MarkChargeBilled": lambda md: stub.MarkChargeBilled(
            billing_pb2.MarkChargeBilledRequest(request_id=request_id, charge_id=charge.charge_id),
            metadata=md,
        ),
        "VoidCharge": lambda md: stub.VoidCharge(
            billing_pb2.VoidChargeRequest(
                request_id=request_id, charge_id=charge.charge_id, reason="duplicate"
            ),
            metadata=md,
        ),
        "GetPatientStatement": lambda md: stub.GetPatientStatement(
            billing_pb2.GetPatientStatementRequest(
                patient_id=charge.patient_id,
                start_date=charge.service_date,
                end_date=charge.service_date,
            ),
            metadata=md,
        ),
        "ExportClaim": lambda md: stub.ExportClaim(
            billing_pb2.ExportClaimRequest(charge_id=charge.charge_id), metadata=md
        ),
    }
    return requests[rpc]


@pytest.mark.parametrize("caller", CALLERS)
@pytest.mark.parametrize("rpc", list(ALLOWED))
async def test_authorization(billing: Billing, rpc: str, caller: str) -> None:
    owner = new_id("patient")
    charge = (await billing.record(completion(patient_id=owner))).charge
    call = _call(billing, rpc, charge)(_metadata(billing, caller, owner))
    if caller in ALLOWED[rpc]:
        await call
        return
    error = await refused(call)
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED, (rpc, caller)
    assert reason_of(error) in {"ROLE_NOT_ALLOWED", "SERVICE_NOT_ALLOWED", "NOT_OWNER"}
    # A refused mutation changed nothing.
    [after] = await billing.charges_of_visit(charge.visit_id)
    assert (after.state, len(after.history)) == (charge.state, 1)


async def test_a_patient_lists_only_their_own_charges(billing: Billing) -> None:
    mine = new_id("patient")
    theirs = new_id("patient")
    own = (await billing.record(completion(patient_id=mine))).charge
    await billing.record(completion(patient_id=theirs))
    # With no filter a patient gets their own charges, never anyone else's.
    reply = await billing.stub.ListCharges(
        billing_pb2.ListChargesRequest(), metadata=billing.patient(mine)
    )
    assert [c.charge_id for c in reply.charges] == [own.charge_id]
    error = await refused(
        billing.stub.ListCharges(
            billing_pb2.ListChargesRequest(patient_id=theirs), metadata=billing.patient(mine)
        )
    )
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED
