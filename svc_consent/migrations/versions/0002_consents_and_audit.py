"""Consents, their versions, and the hash-chained audit trail with its head row.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

Instant = sa.DateTime(timezone=True)
GENESIS_HASH = "0" * 64


def upgrade() -> None:
    op.create_table(
        "consents",
        sa.Column("consent_id", sa.String(36), primary_key=True),
        sa.Column("patient_id", sa.String(100), nullable=False),
        sa.Column("category", sa.Integer(), nullable=False),
        sa.Column("partner_clinic_id", sa.String(100), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("state", sa.Integer(), nullable=False),
        sa.Column("valid_until", Instant, nullable=True),
        sa.UniqueConstraint("patient_id", "category", "partner_clinic_id"),
    )
    op.create_index("ix_consents_state_valid_until", "consents", ["state", "valid_until"])
    op.create_table(
        "consent_versions",
        sa.Column(
            "consent_id",
            sa.String(36),
            sa.ForeignKey("consents.consent_id"),
            primary_key=True,
        ),
        sa.Column("version", sa.Integer(), primary_key=True),
        sa.Column("change_sequence", sa.BigInteger(), nullable=False, unique=True),
        sa.Column("patient_id", sa.String(100), nullable=False),
        sa.Column("category", sa.Integer(), nullable=False),
        sa.Column("partner_clinic_id", sa.String(100), nullable=False),
        sa.Column("state", sa.Integer(), nullable=False),
        sa.Column("text_version", sa.String(64), nullable=False),
        sa.Column("text_sha256", sa.String(64), nullable=False),
        sa.Column("capture_method", sa.Integer(), nullable=False),
        sa.Column("captured_by", sa.String(100), nullable=False),
        sa.Column("record_time", Instant, nullable=False),
        sa.Column("valid_from", Instant, nullable=False),
        sa.Column("valid_until", Instant, nullable=True),
    )
    op.create_index(
        "ix_consent_versions_patient_change",
        "consent_versions",
        ["patient_id", "change_sequence"],
    )
    op.create_table(
        "audit_entries",
        sa.Column("sequence", sa.BigInteger(), primary_key=True, autoincrement=False),
        sa.Column("entry_time", Instant, nullable=False),
        sa.Column("action", sa.Integer(), nullable=False),
        sa.Column("actor_id", sa.String(100), nullable=False),
        sa.Column("actor_role", sa.String(32), nullable=False),
        sa.Column("patient_id", sa.String(100), nullable=False),
        sa.Column("category", sa.Integer(), nullable=False),
        sa.Column("consent_id", sa.String(36), nullable=False),
        sa.Column("consent_version", sa.Integer(), nullable=False),
        sa.Column("outcome", sa.String(200), nullable=False),
        sa.Column("previous_hash", sa.String(64), nullable=False),
        sa.Column("entry_hash", sa.String(64), nullable=False, unique=True),
    )
    op.create_index(
        "ix_audit_entries_patient_sequence", "audit_entries", ["patient_id", "sequence"]
    )
    head = op.create_table(
        "audit_head",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("sequence", sa.BigInteger(), nullable=False),
        sa.Column("entry_hash", sa.String(64), nullable=False),
    )
    op.bulk_insert(head, [{"id": 1, "sequence": 0, "entry_hash": GENESIS_HASH}])


def downgrade() -> None:
    op.drop_table("audit_head")
    op.drop_index("ix_audit_entries_patient_sequence", table_name="audit_entries")
    op.drop_table("audit_entries")
    op.drop_index("ix_consent_versions_patient_change", table_name="consent_versions")
    op.drop_table("consent_versions")
    op.drop_index("ix_consents_state_valid_until", table_name="consents")
    op.drop_table("consents")
