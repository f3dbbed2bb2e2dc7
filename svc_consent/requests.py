"""Checking requests: every bad field collected, then one INVALID_ARGUMENT."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial

from google.protobuf.timestamp_pb2 import Timestamp

from svc_consent.ledger import ConsentKey
from telemesh.auth import Principal
from telemesh.consent.v1 import consent_pb2
from telemesh.validation import Violations

CATEGORIES = frozenset(
    {
        consent_pb2.CONSENT_CATEGORY_TELEHEALTH,
        consent_pb2.CONSENT_CATEGORY_RECORDING,
        consent_pb2.CONSENT_CATEGORY_PARTNER_SHARING,
    }
)
SHA256_HEX = re.compile(r"[0-9a-f]{64}")
TEXT_VERSION_LENGTH = 64
DEFAULT_HEARTBEAT = timedelta(seconds=1)
HEARTBEAT_RANGE = (timedelta(milliseconds=50), timedelta(seconds=60))

# The way each role captures a consent: a patient in the app, a clinician verbally.
CAPTURE_BY_ROLE = {
    "patient": consent_pb2.CAPTURE_METHOD_IN_APP,
    "clinician": consent_pb2.CAPTURE_METHOD_VERBAL,
}


def consent_key(
    check: Violations, patient_id: str, category: int, partner_clinic_id: str
) -> ConsentKey:
    """The patient, a known category, and a partner clinic exactly for sharing."""
    check.identifier("patient_id", patient_id)
    if category not in CATEGORIES:
        check.add("category", "must be TELEHEALTH, RECORDING or PARTNER_SHARING")
    elif category == consent_pb2.CONSENT_CATEGORY_PARTNER_SHARING:
        check.identifier("partner_clinic_id", partner_clinic_id)
    elif partner_clinic_id:
        check.add("partner_clinic_id", "is only for PARTNER_SHARING")
    return ConsentKey(patient_id, category, partner_clinic_id)


def _consent_text(check: Violations, text_version: str, text_sha256: str) -> None:
    if check.required("text_version", text_version):
        check.max_length("text_version", text_version, TEXT_VERSION_LENGTH)
    if not text_sha256:
        check.add("text_sha256", "is required (SHA-256 of the consent text)")
    elif not SHA256_HEX.fullmatch(text_sha256):
        check.add("text_sha256", "must be 64 lowercase hexadecimal digits")


def _capture_method(check: Violations, requested: int, principal: Principal) -> int:
    expected = CAPTURE_BY_ROLE.get(principal.role, consent_pb2.CAPTURE_METHOD_UNSPECIFIED)
    if requested == consent_pb2.CAPTURE_METHOD_UNSPECIFIED:
        return expected
    if requested != expected:
        check.add(
            "capture_method",
            "a patient consents in the app (IN_APP); a clinician records verbal consent (VERBAL)",
        )
    return requested


def _expected_version(check: Violations, value: int, required: bool = False) -> None:
    if required:
        check.check(value >= 1, "expected_version", "is required (the version you saw)")
    else:
        check.check(value >= 0, "expected_version", "must not be negative")


def _instant(check: Violations, field: str, message: Timestamp, present: bool) -> datetime | None:
    """The instant in an optional field, None when it is unset."""
    return check.timestamp(field, message, present) if present else None


@dataclass(frozen=True)
class ChangeRequest:
    """A checked grant or rejection."""

    key: ConsentKey
    text_version: str
    text_sha256: str
    capture_method: int
    valid_from: datetime
    valid_until: datetime | None
    expected_version: int


Period = tuple[datetime, datetime | None]  # valid from, valid until (None: open-ended)


def _change(
    request: consent_pb2.GrantConsentRequest | consent_pb2.RejectConsentRequest,
    principal: Principal,
    period: Callable[[Violations], Period],
) -> ChangeRequest:
    """What a grant and a rejection share, checked in this order; `period` checks and
    gives the validity period, after the capture method."""
    check = Violations()
    check.uuid("request_id", request.request_id)
    key = consent_key(check, request.patient_id, request.category, request.partner_clinic_id)
    _consent_text(check, request.text_version, request.text_sha256)
    capture = _capture_method(check, request.capture_method, principal)
    valid_from, valid_until = period(check)
    _expected_version(check, request.expected_version)
    check.raise_if_any()
    return ChangeRequest(
        key,
        request.text_version,
        request.text_sha256,
        capture,
        valid_from,
        valid_until,
        request.expected_version,
    )


def _validity(request: consent_pb2.GrantConsentRequest, check: Violations) -> Period:
    """A grant's period: from now unless it says otherwise, ending in the future if ever."""
    now = datetime.now(UTC)
    valid_from = _instant(check, "valid_from", request.valid_from, request.HasField("valid_from"))
    valid_until = _instant(
        check, "valid_until", request.valid_until, request.HasField("valid_until")
    )
    start = valid_from or now
    if valid_until is not None:
        if valid_until <= start:
            check.add("valid_until", "must be after valid_from (the period ends before it starts)")
        elif valid_until <= now:
            check.add("valid_until", "must be in the future")
    return start, valid_until


def grant(request: consent_pb2.GrantConsentRequest, principal: Principal) -> ChangeRequest:
    return _change(request, principal, partial(_validity, request))


def reject(request: consent_pb2.RejectConsentRequest, principal: Principal) -> ChangeRequest:
    """A rejection has no period of its own: it stands from now on."""
    return _change(request, principal, lambda check: (datetime.now(UTC), None))


def revoke(request: consent_pb2.RevokeConsentRequest) -> None:
    check = Violations()
    check.uuid("request_id", request.request_id)
    check.uuid("consent_id", request.consent_id)
    _expected_version(check, request.expected_version, required=True)
    check.raise_if_any()


def consent_id(value: str) -> None:
    check = Violations()
    check.uuid("consent_id", value)
    check.raise_if_any()


@dataclass(frozen=True)
class CheckRequest:
    key: ConsentKey
    at: datetime | None


def check_consent(request: consent_pb2.CheckConsentRequest) -> CheckRequest:
    check = Violations()
    key = consent_key(check, request.patient_id, request.category, request.partner_clinic_id)
    at = _instant(check, "at_time", request.at_time, request.HasField("at_time"))
    check.raise_if_any()
    return CheckRequest(key, at)


@dataclass(frozen=True)
class WatchRequest:
    patient_id: str
    after_sequence: int | None  # None: only new changes
    heartbeat_seconds: float


def watch(request: consent_pb2.WatchConsentChangesRequest) -> WatchRequest:
    check = Violations()
    check.identifier("patient_id", request.patient_id, required=False)
    after = request.after_sequence if request.HasField("after_sequence") else None
    if after is not None:
        check.check(after >= 0, "after_sequence", "must not be negative")
    heartbeat = DEFAULT_HEARTBEAT
    if request.HasField("heartbeat_interval"):
        heartbeat = (
            check.duration("heartbeat_interval", request.heartbeat_interval, *HEARTBEAT_RANGE)
            or heartbeat
        )
    check.raise_if_any()
    return WatchRequest(request.patient_id, after, heartbeat.total_seconds())


def patient_filter(value: str, required: bool) -> None:
    check = Violations()
    check.identifier("patient_id", value, required=required)
    check.raise_if_any()
