"""The signaling service's first schema: idempotency records.

Revision ID: 0001
Revises:
Create Date: 2026-11-25
"""

from collections.abc import Sequence

from telemesh.shared_tables import create_idempotency_records, drop_idempotency_records

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    create_idempotency_records()


def downgrade() -> None:
    drop_idempotency_records()
