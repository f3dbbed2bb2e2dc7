"""A visit completion as the session service delivers it: checked field by field, then
reduced to what coding and the charge rest on."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from svc_billing.coding import VisitFacts
from telemesh.billing.v1 import billing_pb2
from telemesh.validation import Violations

MAX_DIAGNOSES = 12
MAX_CONNECTED_SECONDS = 86_400
# A completion dated in the future beyond clock skew is a bug upstream, not a visit.
MAX_CLOCK_SKEW = timedelta(hours=1)
# How long before its completion a visit's date of service may be (a visit left in
# progress and completed late); a later date of service than the completion's is never
# right (the local date is at most a day ahead of the UTC date, in any time zone).
MAX_DAYS_SERVICE_BEFORE_COMPLETION = 31


@dataclass(frozen=True)
class Completion:
    visit_id: str
    patient_id: str
    clinician_id: str
    practice_id: str
    payer_id: str
    complete_time: datetime
    service_date: date
    facts: VisitFacts
    diagnosis_codes: tuple[str, ...]
    digest: str


def completion_digest(request: billing_pb2.RecordVisitCompletionRequest) -> str:
    """What a redelivery must match: the completion's canonical bytes."""
    return hashlib.sha256(request.SerializeToString(deterministic=True)).hexdigest()


def check_diagnoses(check: Violations, codes: list[str]) -> None:
    if not codes:
        check.add("diagnosis_codes", "at least one ICD-10-CM code is required")
    elif len(codes) > MAX_DIAGNOSES:
        check.add("diagnosis_codes", f"at most {MAX_DIAGNOSES} codes")
    if len(set(codes)) != len(codes):
        check.add("diagnosis_codes", "codes must be distinct")
    for index, code in enumerate(codes[: MAX_DIAGNOSES + 1]):
        check.icd10_cm(f"diagnosis_codes[{index}]", code)


def validate_completion(
    request: billing_pb2.RecordVisitCompletionRequest, now: datetime | None = None
) -> Completion:
    """The completion, or INVALID_ARGUMENT listing every bad field."""
    now = now or datetime.now(UTC)
    check = Violations()
    for field in ("visit_id", "patient_id", "clinician_id", "practice_id"):
        check.identifier(field, getattr(request, field))
    check.identifier("payer_id", request.payer_id, required=False)
    complete_time = check.timestamp(
        "complete_time", request.complete_time, request.HasField("complete_time")
    )
    if complete_time is not None and complete_time > now + MAX_CLOCK_SKEW:
        check.add("complete_time", "is in the future")
    service_date = check.iso_date("service_date", request.service_date)
    if service_date is not None and complete_time is not None:
        days_before = (complete_time.date() - service_date).days
        check.check(
            -1 <= days_before <= MAX_DAYS_SERVICE_BEFORE_COMPLETION,
            "service_date",
            f"must be the visit's local date: not after complete_time, and at most "
            f"{MAX_DAYS_SERVICE_BEFORE_COMPLETION} days before it",
        )
    check.check(
        0 <= request.connected_seconds <= MAX_CONNECTED_SECONDS,
        "connected_seconds",
        f"must be between 0 and {MAX_CONNECTED_SECONDS}",
    )
    check.check(
        request.patient_location
        in (billing_pb2.PATIENT_LOCATION_HOME, billing_pb2.PATIENT_LOCATION_OTHER),
        "patient_location",
        "must be PATIENT_LOCATION_HOME or PATIENT_LOCATION_OTHER",
    )
    codes = list(request.diagnosis_codes)
    check_diagnoses(check, codes)
    check.raise_if_any()
    assert complete_time is not None
    assert service_date is not None
    return Completion(
        visit_id=request.visit_id,
        patient_id=request.patient_id,
        clinician_id=request.clinician_id,
        practice_id=request.practice_id,
        payer_id=request.payer_id,
        complete_time=complete_time,
        service_date=service_date,
        facts=VisitFacts(
            connected_seconds=request.connected_seconds,
            new_patient=request.new_patient,
            at_home=request.patient_location == billing_pb2.PATIENT_LOCATION_HOME,
            audio_only=request.audio_only,
        ),
        diagnosis_codes=tuple(codes),
        digest=completion_digest(request),
    )
