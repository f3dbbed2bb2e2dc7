"""Outbox dead letters: events the receiver refused for good.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25
"""

from collections.abc import Sequence

from telemesh.shared_tables import add_dead_letters, drop_dead_letters

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    add_dead_letters()


def downgrade() -> None:
    drop_dead_letters()
