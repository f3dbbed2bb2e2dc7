"""Rooms (membership, admission, recording, open connected period) and the outbox.

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


def upgrade() -> None:
    op.create_table(
        "rooms",
        sa.Column("room_id", sa.String(64), primary_key=True),
        sa.Column("visit_id", sa.String(64), nullable=False, unique=True),
        sa.Column("patient_id", sa.String(100), nullable=False, index=True),
        sa.Column("clinician_id", sa.String(100), nullable=False),
        sa.Column("admitted", sa.Boolean(), nullable=False),
        sa.Column("recording", sa.Boolean(), nullable=False),
        sa.Column("connected_since", Instant, nullable=True),
        sa.Column("close_reason", sa.String(40), nullable=False),
        sa.Column("create_time", Instant, nullable=False),
        sa.Column("update_time", Instant, nullable=False),
    )
    op.create_table(
        "outbox_events",
        sa.Column("event_id", sa.String(36), primary_key=True),
        sa.Column("target", sa.String(40), nullable=False),
        sa.Column("method", sa.String(200), nullable=False),
        sa.Column("key", sa.String(100), nullable=False, index=True),
        sa.Column("payload", sa.LargeBinary(), nullable=False),
        sa.Column("traceparent", sa.String(100), nullable=False),
        sa.Column("create_time", Instant, nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_time", Instant, nullable=False),
        sa.Column("lease_until", Instant, nullable=True),
        sa.Column("delivered_time", Instant, nullable=True, index=True),
        sa.Column("dead_time", Instant, nullable=True),
        sa.Column("last_error", sa.String(200), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("outbox_events")
    op.drop_table("rooms")
