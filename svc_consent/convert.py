"""Rows to messages of the contract."""

from __future__ import annotations

from svc_consent.models import AuditEntryRow, ConsentVersionRow
from telemesh.consent.v1 import consent_pb2
from telemesh.timestamps import timestamp

# The watch stream's kind of change for each state a version can have.
CHANGE_KINDS: dict[int, consent_pb2.ConsentChangeKind.ValueType] = {
    consent_pb2.CONSENT_STATE_ACTIVE: consent_pb2.CONSENT_CHANGE_KIND_GRANTED,
    consent_pb2.CONSENT_STATE_REJECTED: consent_pb2.CONSENT_CHANGE_KIND_REJECTED,
    consent_pb2.CONSENT_STATE_REVOKED: consent_pb2.CONSENT_CHANGE_KIND_REVOKED,
    consent_pb2.CONSENT_STATE_EXPIRED: consent_pb2.CONSENT_CHANGE_KIND_EXPIRED,
}


def consent(row: ConsentVersionRow) -> consent_pb2.Consent:
    message = consent_pb2.Consent(
        consent_id=row.consent_id,
        version=row.version,
        patient_id=row.patient_id,
        category=consent_pb2.ConsentCategory.ValueType(row.category),
        partner_clinic_id=row.partner_clinic_id,
        state=consent_pb2.ConsentState.ValueType(row.state),
        text_version=row.text_version,
        text_sha256=row.text_sha256,
        capture_method=consent_pb2.CaptureMethod.ValueType(row.capture_method),
        captured_by=row.captured_by,
        record_time=timestamp(row.record_time),
        valid_from=timestamp(row.valid_from),
    )
    if row.valid_until is not None:
        message.valid_until.CopyFrom(timestamp(row.valid_until))
    return message


def change(row: ConsentVersionRow) -> consent_pb2.ConsentChange:
    return consent_pb2.ConsentChange(
        sequence=row.change_sequence,
        kind=CHANGE_KINDS.get(row.state, consent_pb2.CONSENT_CHANGE_KIND_UNSPECIFIED),
        consent=consent(row),
    )


def audit_entry(row: AuditEntryRow) -> consent_pb2.AuditEntry:
    return consent_pb2.AuditEntry(
        sequence=row.sequence,
        entry_time=timestamp(row.entry_time),
        action=consent_pb2.AuditAction.ValueType(row.action),
        actor_id=row.actor_id,
        actor_role=row.actor_role,
        patient_id=row.patient_id,
        consent_id=row.consent_id,
        consent_version=row.consent_version,
        outcome=row.outcome,
        previous_hash=row.previous_hash,
        entry_hash=row.entry_hash,
        category=consent_pb2.ConsentCategory.ValueType(row.category),
    )
