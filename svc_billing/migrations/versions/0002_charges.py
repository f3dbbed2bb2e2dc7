"""Charges (one per completed visit) and their state history.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "charges",
        sa.Column("charge_id", sa.String(36), primary_key=True),
        sa.Column("visit_id", sa.String(100), nullable=False),
        sa.Column("patient_id", sa.String(100), nullable=False),
        sa.Column("clinician_id", sa.String(100), nullable=False),
        sa.Column("practice_id", sa.String(100), nullable=False),
        sa.Column("payer_id", sa.String(100), nullable=False),
        sa.Column("complete_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("service_date", sa.Date(), nullable=False),
        sa.Column("connected_seconds", sa.Integer(), nullable=False),
        sa.Column("new_patient", sa.Boolean(), nullable=False),
        sa.Column("at_home", sa.Boolean(), nullable=False),
        sa.Column("audio_only", sa.Boolean(), nullable=False),
        sa.Column("completion_digest", sa.String(64), nullable=False),
        sa.Column("rule_set", sa.String(64), nullable=False),
        sa.Column("procedure_code", sa.String(5), nullable=False),
        sa.Column("modifiers", sa.JSON(), nullable=False),
        sa.Column("place_of_service", sa.String(2), nullable=False),
        sa.Column("units", sa.Integer(), nullable=False),
        sa.Column("amount_minor", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("fee_schedule", sa.String(64), nullable=False),
        sa.Column("diagnosis_codes", sa.JSON(), nullable=False),
        sa.Column("diagnosis_pointers", sa.JSON(), nullable=False),
        sa.Column("not_billable_reason", sa.String(300), nullable=False),
        sa.Column("create_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("void_reason", sa.String(64), nullable=False),
        sa.Column("update_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.UniqueConstraint("visit_id", name="uq_charges_visit_id"),
    )
    op.create_index("ix_charges_patient_id", "charges", ["patient_id"])
    op.create_index("ix_charges_create_time", "charges", ["create_time"])
    op.create_index("ix_charges_state", "charges", ["state"])
    op.create_table(
        "charge_events",
        sa.Column(
            "charge_id",
            sa.String(36),
            sa.ForeignKey("charges.charge_id"),
            primary_key=True,
        ),
        sa.Column("sequence", sa.Integer(), primary_key=True),
        sa.Column("from_state", sa.String(16), nullable=False),
        sa.Column("to_state", sa.String(16), nullable=False),
        sa.Column("reason", sa.String(64), nullable=False),
        sa.Column("actor_role", sa.String(16), nullable=False),
        sa.Column("actor_id", sa.String(100), nullable=False),
        sa.Column("event_time", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("charge_events")
    op.drop_index("ix_charges_state", "charges")
    op.drop_index("ix_charges_create_time", "charges")
    op.drop_index("ix_charges_patient_id", "charges")
    op.drop_table("charges")
