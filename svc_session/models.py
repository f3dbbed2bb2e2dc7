"""The session service's tables (its own database; no other service reads them).

PHI columns (`*_enc`) hold ciphertext only (telemesh.field_crypto). Double booking is
impossible by construction: a visit claims every 5-minute block of its slot in
`slot_claims`, whose primary key (clinician, block) the database enforces on SQLite and
PostgreSQL alike.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Column, Index, Text
from sqlmodel import Field, SQLModel

from telemesh.db_types import UtcDateTime
from telemesh.idempotency import IdempotencyRecord
from telemesh.outbox import OutboxEvent

metadata = SQLModel.metadata

# The grain of slot claims: slot starts and lengths are multiples of it.
BLOCK_MINUTES = 5


class PatientRow(SQLModel, table=True):
    __tablename__ = "patients"

    patient_id: str = Field(primary_key=True, max_length=100)
    display_name_enc: str = Field(sa_type=Text)
    birth_date_enc: str = Field(sa_type=Text)
    email_enc: str = Field(sa_type=Text)
    phone_enc: str = Field(sa_type=Text)
    create_time: datetime = Field(sa_type=UtcDateTime)


class ClinicianRow(SQLModel, table=True):
    __tablename__ = "clinicians"

    clinician_id: str = Field(primary_key=True, max_length=100)
    display_name_enc: str = Field(sa_type=Text)
    birth_date_enc: str = Field(sa_type=Text)
    email_enc: str = Field(sa_type=Text)
    phone_enc: str = Field(sa_type=Text)
    time_zone: str = Field(max_length=64)
    practice_id: str = Field(max_length=100)
    create_time: datetime = Field(sa_type=UtcDateTime)
    # The name patients see: the clinician's choice, not PHI (not sealed).
    public_name: str = Field(default="", max_length=200, sa_column_kwargs={"server_default": ""})


class AvailabilityRow(SQLModel, table=True):
    __tablename__ = "availability"

    clinician_id: str = Field(primary_key=True, max_length=100)
    time_zone: str = Field(max_length=64)
    slot_minutes: int
    hours_json: str = Field(sa_type=Text)  # [[day 1-7, "HH:MM", "HH:MM"], ...]
    update_time: datetime = Field(sa_type=UtcDateTime)


class AvailabilityExceptionRow(SQLModel, table=True):
    __tablename__ = "availability_exceptions"

    exception_id: str = Field(primary_key=True, max_length=36)
    clinician_id: str = Field(index=True, max_length=100)
    local_date: str = Field(max_length=10)
    kind: int
    start_local_time: str = Field(default="", max_length=5)
    end_local_time: str = Field(default="", max_length=5)


class VisitRow(SQLModel, table=True):
    __tablename__ = "visits"

    visit_id: str = Field(primary_key=True, max_length=36)
    patient_id: str = Field(index=True, max_length=100)
    clinician_id: str = Field(index=True, max_length=100)
    practice_id: str = Field(max_length=100)
    start_time: datetime = Field(sa_type=UtcDateTime, index=True)
    end_time: datetime = Field(sa_type=UtcDateTime)
    state: int = Field(index=True)
    patient_location: int = 0
    # Comma-separated ICD-10-CM codes, sealed (column `diagnosis_codes` in the
    # ciphertext's binding); empty until completion.
    diagnosis_codes_enc: str = Field(default="", sa_type=Text)
    audio_only: bool = False
    cancel_reason: int = 0
    new_patient: bool = False
    traceparent: str = Field(default="", max_length=100)
    trace_id: str = Field(default="", max_length=32, index=True)
    create_time: datetime = Field(sa_type=UtcDateTime)
    update_time: datetime = Field(sa_type=UtcDateTime)


class VisitTransitionRow(SQLModel, table=True):
    __tablename__ = "visit_transitions"

    transition_id: int | None = Field(default=None, primary_key=True)
    visit_id: str = Field(index=True, max_length=36)
    from_state: int
    to_state: int
    transition_time: datetime = Field(sa_type=UtcDateTime)
    actor_id: str = Field(max_length=100)
    actor_role: str = Field(max_length=20)


class ConnectedPeriodRow(SQLModel, table=True):
    __tablename__ = "connected_periods"

    period_id: int | None = Field(default=None, primary_key=True)
    visit_id: str = Field(index=True, max_length=36)
    start_time: datetime = Field(sa_type=UtcDateTime)
    end_time: datetime | None = Field(default=None, sa_type=UtcDateTime)


class SlotClaimRow(SQLModel, table=True):
    __tablename__ = "slot_claims"

    clinician_id: str = Field(primary_key=True, max_length=100)
    block: int = Field(primary_key=True)  # minutes since the epoch / BLOCK_MINUTES
    visit_id: str = Field(index=True, max_length=36)


class AccessLogEntryRow(SQLModel, table=True):
    """One entry of the HIPAA access log (telemesh.hash_chain): who reached which
    patient's record, through which call, allowed or refused; never the PHI itself."""

    __tablename__ = "access_log_entries"
    __table_args__ = (Index("ix_access_log_patient_sequence", "patient_id", "sequence"),)

    sequence: int = Field(
        sa_column=Column(BigInteger, primary_key=True, autoincrement=False, nullable=False)
    )
    entry_time: datetime = Field(sa_type=UtcDateTime)
    access_id: str = Field(max_length=36, unique=True)
    access_time: str = Field(max_length=32)  # RFC 3339, as hashed
    patient_id: str = Field(max_length=100)
    actor_id: str = Field(max_length=100)
    actor_role: str = Field(max_length=20)
    service: str = Field(max_length=20)
    method: str = Field(max_length=200)
    outcome: int
    basis: str = Field(max_length=60)
    previous_hash: str = Field(max_length=64)
    entry_hash: str = Field(max_length=64, unique=True)


class AccessLogHeadRow(SQLModel, table=True):
    __tablename__ = "access_log_head"

    id: int = Field(primary_key=True)
    sequence: int = Field(sa_column=Column(BigInteger, nullable=False))
    entry_hash: str = Field(max_length=64)


ACCESS_LOG_ENTRIES: Any = AccessLogEntryRow.__table__  # type: ignore[attr-defined]
ACCESS_LOG_HEAD: Any = AccessLogHeadRow.__table__  # type: ignore[attr-defined]

__all__ = [
    "ACCESS_LOG_ENTRIES",
    "ACCESS_LOG_HEAD",
    "BLOCK_MINUTES",
    "AccessLogEntryRow",
    "AccessLogHeadRow",
    "AvailabilityExceptionRow",
    "AvailabilityRow",
    "ClinicianRow",
    "ConnectedPeriodRow",
    "IdempotencyRecord",
    "OutboxEvent",
    "PatientRow",
    "SlotClaimRow",
    "VisitRow",
    "VisitTransitionRow",
    "metadata",
]
