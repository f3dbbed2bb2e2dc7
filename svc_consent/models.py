"""The consent service's tables (its own database; no other service reads them).

Nothing here is ever updated in place except the two "head" rows:
- `consent_versions` keeps every version of every consent; a version is never changed.
  Its `change_sequence` numbers the changes for the watch stream (one per version).
- `consents` is the head of each consent: its newest version, state and end of
  validity, for the optimistic check (`version` compared and set) and the expiry sweep.
- `audit_entries` is the hash chain; `audit_head` holds the newest sequence and hash.
  Every append locks the head row first, so that concurrent writers queue instead of
  forking the chain, and so that a cut-off tail is visible to verification.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Column, Index, UniqueConstraint
from sqlmodel import Field, SQLModel

from telemesh.db_types import UtcDateTime
from telemesh.hash_chain import GENESIS_HASH as CHAIN_GENESIS_HASH
from telemesh.idempotency import IdempotencyRecord

metadata = SQLModel.metadata

ID_LENGTH = 100
HASH_LENGTH = 64
# The previous hash of the first entry in the chain.
GENESIS_HASH = CHAIN_GENESIS_HASH


class ConsentRow(SQLModel, table=True):
    __tablename__ = "consents"
    __table_args__ = (
        UniqueConstraint("patient_id", "category", "partner_clinic_id"),
        Index("ix_consents_state_valid_until", "state", "valid_until"),
    )

    consent_id: str = Field(primary_key=True, max_length=36)
    patient_id: str = Field(max_length=ID_LENGTH)
    category: int
    partner_clinic_id: str = Field(default="", max_length=ID_LENGTH)
    version: int
    state: int
    valid_until: datetime | None = Field(default=None, sa_type=UtcDateTime)


class ConsentVersionRow(SQLModel, table=True):
    __tablename__ = "consent_versions"
    __table_args__ = (Index("ix_consent_versions_patient_change", "patient_id", "change_sequence"),)

    consent_id: str = Field(primary_key=True, foreign_key="consents.consent_id", max_length=36)
    version: int = Field(primary_key=True)
    change_sequence: int = Field(sa_column=Column(BigInteger, nullable=False, unique=True))
    patient_id: str = Field(max_length=ID_LENGTH)
    category: int
    partner_clinic_id: str = Field(default="", max_length=ID_LENGTH)
    state: int
    text_version: str = Field(max_length=64)
    text_sha256: str = Field(max_length=HASH_LENGTH)
    capture_method: int
    captured_by: str = Field(max_length=ID_LENGTH)
    record_time: datetime = Field(sa_type=UtcDateTime)
    valid_from: datetime = Field(sa_type=UtcDateTime)
    valid_until: datetime | None = Field(default=None, sa_type=UtcDateTime)


class AuditEntryRow(SQLModel, table=True):
    __tablename__ = "audit_entries"
    __table_args__ = (Index("ix_audit_entries_patient_sequence", "patient_id", "sequence"),)

    sequence: int = Field(
        sa_column=Column(BigInteger, primary_key=True, autoincrement=False, nullable=False)
    )
    entry_time: datetime = Field(sa_type=UtcDateTime)
    action: int
    actor_id: str = Field(max_length=ID_LENGTH)
    actor_role: str = Field(max_length=32)
    patient_id: str = Field(default="", max_length=ID_LENGTH)
    category: int = 0
    consent_id: str = Field(default="", max_length=36)
    consent_version: int = 0
    outcome: str = Field(max_length=200)
    previous_hash: str = Field(max_length=HASH_LENGTH)
    entry_hash: str = Field(max_length=HASH_LENGTH, unique=True)


class AuditHeadRow(SQLModel, table=True):
    __tablename__ = "audit_head"

    id: int = Field(primary_key=True)
    sequence: int = Field(sa_column=Column(BigInteger, nullable=False))
    entry_hash: str = Field(max_length=HASH_LENGTH)


# The one row of `audit_head`.
AUDIT_HEAD_ID = 1

# The Core tables of the audit trail: the chain is written and walked as plain rows, which
# costs a fraction of ORM objects on the per-check path.
AUDIT_ENTRIES: Any = AuditEntryRow.__table__  # type: ignore[attr-defined]
AUDIT_HEAD: Any = AuditHeadRow.__table__  # type: ignore[attr-defined]

__all__ = [
    "AUDIT_ENTRIES",
    "AUDIT_HEAD",
    "AUDIT_HEAD_ID",
    "GENESIS_HASH",
    "AuditEntryRow",
    "AuditHeadRow",
    "ConsentRow",
    "ConsentVersionRow",
    "IdempotencyRecord",
    "metadata",
]
