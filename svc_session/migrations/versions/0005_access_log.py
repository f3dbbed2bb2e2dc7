"""The HIPAA access log: a hash-chained record of every access to a patient's record.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

GENESIS_HASH = "0" * 64


def upgrade() -> None:
    op.create_table(
        "access_log_entries",
        sa.Column("sequence", sa.BigInteger(), primary_key=True, autoincrement=False),
        sa.Column("entry_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("access_id", sa.String(36), nullable=False, unique=True),
        sa.Column("access_time", sa.String(32), nullable=False),
        sa.Column("patient_id", sa.String(100), nullable=False),
        sa.Column("actor_id", sa.String(100), nullable=False),
        sa.Column("actor_role", sa.String(20), nullable=False),
        sa.Column("service", sa.String(20), nullable=False),
        sa.Column("method", sa.String(200), nullable=False),
        sa.Column("outcome", sa.Integer(), nullable=False),
        sa.Column("basis", sa.String(60), nullable=False),
        sa.Column("previous_hash", sa.String(64), nullable=False),
        sa.Column("entry_hash", sa.String(64), nullable=False, unique=True),
    )
    op.create_index(
        "ix_access_log_patient_sequence", "access_log_entries", ["patient_id", "sequence"]
    )
    head = op.create_table(
        "access_log_head",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("sequence", sa.BigInteger(), nullable=False),
        sa.Column("entry_hash", sa.String(64), nullable=False),
    )
    op.bulk_insert(head, [{"id": 1, "sequence": 0, "entry_hash": GENESIS_HASH}])


def downgrade() -> None:
    op.drop_table("access_log_head")
    op.drop_index("ix_access_log_patient_sequence", table_name="access_log_entries")
    op.drop_table("access_log_entries")
