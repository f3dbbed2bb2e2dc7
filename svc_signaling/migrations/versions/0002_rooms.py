"""Rooms (membership, admission, recording, open connected period) and the outbox.

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
    create_outbox_events()


def downgrade() -> None:
    op.drop_table("outbox_events")
    op.drop_table("rooms")
