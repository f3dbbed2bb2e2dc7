"""Which replica holds a room (`rooms.host_id`) and which replicas are alive
(`signaling_replicas`): svc_signaling.room_hosts.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("rooms", sa.Column("host_id", sa.String(32), nullable=False, server_default=""))
    op.create_table(
        "signaling_replicas",
        sa.Column("replica_id", sa.String(32), primary_key=True),
        sa.Column("alive_until", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("signaling_replicas")
    op.drop_column("rooms", "host_id")
