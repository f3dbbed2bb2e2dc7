"""The billing service's tables (its own database; no other service reads them).

A charge's coded fields are written once, when the completion is recorded, and never
updated. Its diagnosis codes (PHI) and its completion digest hold ciphertext only
(svc_billing.sealed). Only the state columns (`state`, `void_reason`, `update_time`, `revision`)
change, each change together with a `charge_events` row in the same transaction.
"""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import JSON, BigInteger, Column, Text, UniqueConstraint
from sqlmodel import Field, SQLModel

from telemesh.db_types import UtcDateTime
from telemesh.idempotency import IdempotencyRecord

metadata = SQLModel.metadata

# Charge states as stored (the proto's ChargeState without its prefix, lower case).
BILLABLE = "billable"
BILLED = "billed"
VOIDED = "voided"
NOT_BILLABLE = "not_billable"


class ChargeRow(SQLModel, table=True):
    __tablename__ = "charges"
    # One charge per visit, enforced by the database: concurrent deliveries of one
    # completion cannot both insert.
    __table_args__ = (UniqueConstraint("visit_id", name="uq_charges_visit_id"),)

    charge_id: str = Field(primary_key=True, max_length=36)
    visit_id: str = Field(max_length=100)
    patient_id: str = Field(max_length=100, index=True)
    clinician_id: str = Field(max_length=100)
    practice_id: str = Field(max_length=100)
    payer_id: str = Field(default="", max_length=100)
    complete_time: datetime = Field(sa_type=UtcDateTime)
    service_date: date
    connected_seconds: int
    new_patient: bool
    at_home: bool
    audio_only: bool
    # SHA-256 of the completion as first delivered (a redelivery must match it), sealed.
    completion_digest: str = Field(sa_type=Text)

    rule_set: str = Field(max_length=64)
    procedure_code: str = Field(default="", max_length=5)
    modifiers: list[str] = Field(sa_column=Column(JSON, nullable=False))
    place_of_service: str = Field(max_length=2)
    units: int
    amount_minor: int = Field(sa_column=Column(BigInteger, nullable=False))
    currency: str = Field(max_length=3)
    fee_schedule: str = Field(max_length=64)
    diagnosis_codes_enc: str = Field(sa_type=Text)  # a JSON list of ICD-10-CM codes, sealed
    diagnosis_pointers: list[int] = Field(sa_column=Column(JSON, nullable=False))
    not_billable_reason: str = Field(default="", max_length=300)
    # Why not billable, as svc_billing.coding names it ("" when billable), and the
    # connected seconds the rule needed.
    not_billable_code: str = Field(
        default="", max_length=40, sa_column_kwargs={"server_default": ""}
    )
    minimum_seconds: int = Field(default=0, sa_column_kwargs={"server_default": "0"})
    create_time: datetime = Field(sa_type=UtcDateTime, index=True)

    state: str = Field(max_length=16, index=True)
    void_reason: str = Field(default="", max_length=64)
    update_time: datetime = Field(sa_type=UtcDateTime)
    revision: int = 1  # the number of charge_events rows


class ChargeEventRow(SQLModel, table=True):
    """One state change of a charge; (charge_id, sequence) is unique, so two
    concurrent changes of one charge cannot both be recorded."""

    __tablename__ = "charge_events"

    charge_id: str = Field(primary_key=True, foreign_key="charges.charge_id", max_length=36)
    sequence: int = Field(primary_key=True)
    from_state: str = Field(default="", max_length=16)
    to_state: str = Field(max_length=16)
    reason: str = Field(default="", max_length=64)
    actor_role: str = Field(max_length=16)
    actor_id: str = Field(max_length=100)
    event_time: datetime = Field(sa_type=UtcDateTime)


__all__ = [
    "BILLABLE",
    "BILLED",
    "NOT_BILLABLE",
    "VOIDED",
    "ChargeEventRow",
    "ChargeRow",
    "IdempotencyRecord",
    "metadata",
]
