"""Checking requests: every bad field collected, then one INVALID_ARGUMENT."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date

from svc_billing.convert import PROTO_TO_STATE
from svc_billing.store import ChargeFilter
from telemesh.auth import Principal
from telemesh.billing.v1 import billing_pb2
from telemesh.validation import Violations

# A void's reason is a code, never free text (no clinical notes, so no PHI).
VOID_REASON = re.compile(r"^[a-z][a-z0-9-]{1,63}$")
MAX_STATEMENT_DAYS = 366


def charge_id(value: str) -> None:
    check = Violations()
    check.uuid("charge_id", value)
    check.raise_if_any()


def charge_filter(request: billing_pb2.ListChargesRequest, principal: Principal) -> ChargeFilter:
    """The listing's filter; a patient's own charges when a patient names no one."""
    patient_id = request.patient_id
    if principal.role == "patient":
        patient_id = patient_id or principal.subject
    check = Violations()
    for field, value in (("patient_id", patient_id), ("visit_id", request.visit_id)):
        check.identifier(field, value, required=False)
    states = []
    for index, state in enumerate(request.states):
        if check.check(state in PROTO_TO_STATE, f"states[{index}]", "is not a charge state"):
            states.append(PROTO_TO_STATE[state])
    check.raise_if_any()
    return ChargeFilter(patient_id, request.visit_id, tuple(sorted(set(states))))


def transition(
    request: billing_pb2.MarkChargeBilledRequest | billing_pb2.VoidChargeRequest,
    reason: str | None,
) -> None:
    """A change of a charge's state; a `reason` (a void's) must be a reason code."""
    check = Violations()
    check.uuid("request_id", request.request_id)
    check.uuid("charge_id", request.charge_id)
    if reason is not None:
        check.check(
            bool(VOID_REASON.fullmatch(reason)),
            "reason",
            "must be a reason code: 2 to 64 lower-case letters, digits or dashes "
            "(e.g. duplicate, coding-error)",
        )
    check.raise_if_any()


@dataclass(frozen=True)
class StatementPeriod:
    patient_id: str
    start: date
    end: date


def statement(
    request: billing_pb2.GetPatientStatementRequest, principal: Principal
) -> StatementPeriod:
    """Whose statement and for which dates of service (a patient's own by default)."""
    patient_id = request.patient_id or (principal.subject if principal.role == "patient" else "")
    check = Violations()
    check.identifier("patient_id", patient_id)
    start = check.iso_date("start_date", request.start_date)
    end = check.iso_date("end_date", request.end_date)
    if start is not None and end is not None:
        if end < start:
            check.add("end_date", "must not be before start_date")
        elif (end - start).days > MAX_STATEMENT_DAYS:
            check.add("end_date", f"must be at most {MAX_STATEMENT_DAYS} days after start_date")
    check.raise_if_any()
    assert start is not None
    assert end is not None
    return StatementPeriod(patient_id, start, end)
