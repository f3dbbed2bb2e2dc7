"""People, availability, visits, slot claims and the outbox.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from telemesh.shared_tables import create_outbox_events

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

Instant = sa.DateTime(timezone=True)


def upgrade() -> None:
    for table in ("patients", "clinicians"):
        extra = (
            [
                sa.Column("time_zone", sa.String(64), nullable=False),
                sa.Column("practice_id", sa.String(100), nullable=False),
            ]
            if table == "clinicians"
            else []
        )
        op.create_table(
            table,
            sa.Column(f"{table[:-1]}_id", sa.String(100), primary_key=True),
            sa.Column("display_name_enc", sa.Text(), nullable=False),
            sa.Column("birth_date_enc", sa.Text(), nullable=False),
            sa.Column("email_enc", sa.Text(), nullable=False),
            sa.Column("phone_enc", sa.Text(), nullable=False),
            *extra,
            sa.Column("create_time", Instant, nullable=False),
        )
    op.create_table(
        "availability",
        sa.Column("clinician_id", sa.String(100), primary_key=True),
        sa.Column("time_zone", sa.String(64), nullable=False),
        sa.Column("slot_minutes", sa.Integer(), nullable=False),
        sa.Column("hours_json", sa.Text(), nullable=False),
        sa.Column("update_time", Instant, nullable=False),
    )
    op.create_table(
        "availability_exceptions",
        sa.Column("exception_id", sa.String(36), primary_key=True),
        sa.Column("clinician_id", sa.String(100), nullable=False, index=True),
        sa.Column("local_date", sa.String(10), nullable=False),
        sa.Column("kind", sa.Integer(), nullable=False),
        sa.Column("start_local_time", sa.String(5), nullable=False),
        sa.Column("end_local_time", sa.String(5), nullable=False),
    )
    op.create_table(
        "visits",
        sa.Column("visit_id", sa.String(36), primary_key=True),
        sa.Column("patient_id", sa.String(100), nullable=False, index=True),
        sa.Column("clinician_id", sa.String(100), nullable=False, index=True),
        sa.Column("practice_id", sa.String(100), nullable=False),
        sa.Column("start_time", Instant, nullable=False, index=True),
        sa.Column("end_time", Instant, nullable=False),
        sa.Column("state", sa.Integer(), nullable=False, index=True),
        sa.Column("patient_location", sa.Integer(), nullable=False),
        sa.Column("diagnosis_codes", sa.Text(), nullable=False),
        sa.Column("audio_only", sa.Boolean(), nullable=False),
        sa.Column("cancel_reason", sa.Integer(), nullable=False),
        sa.Column("new_patient", sa.Boolean(), nullable=False),
        sa.Column("traceparent", sa.String(100), nullable=False),
        sa.Column("trace_id", sa.String(32), nullable=False, index=True),
        sa.Column("create_time", Instant, nullable=False),
        sa.Column("update_time", Instant, nullable=False),
    )
    op.create_table(
        "visit_transitions",
        sa.Column("transition_id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("visit_id", sa.String(36), nullable=False, index=True),
        sa.Column("from_state", sa.Integer(), nullable=False),
        sa.Column("to_state", sa.Integer(), nullable=False),
        sa.Column("transition_time", Instant, nullable=False),
        sa.Column("actor_id", sa.String(100), nullable=False),
        sa.Column("actor_role", sa.String(20), nullable=False),
    )
    op.create_table(
        "connected_periods",
        sa.Column("period_id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("visit_id", sa.String(36), nullable=False, index=True),
        sa.Column("start_time", Instant, nullable=False),
        sa.Column("end_time", Instant, nullable=True),
    )
    op.create_table(
        "slot_claims",
        sa.Column("clinician_id", sa.String(100), primary_key=True),
        sa.Column("block", sa.Integer(), primary_key=True),
        sa.Column("visit_id", sa.String(36), nullable=False, index=True),
    )
    create_outbox_events(dead_letters=False)


def downgrade() -> None:
    for table in (
        "outbox_events",
        "slot_claims",
        "connected_periods",
        "visit_transitions",
        "visits",
        "availability_exceptions",
        "availability",
        "clinicians",
        "patients",
    ):
        op.drop_table(table)
