"""Why a charge is not billable as a code, and the connected time its rule needed
(charges.not_billable_code, charges.minimum_seconds); charges recorded before get them
from their note.

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

# The notes the coding rules wrote: "<code>: ... needs N s" / "... more than N s ...".
CODES = ("below-minimum-time", "audio-only-discussion-too-short")


def upgrade() -> None:
    op.add_column(
        "charges",
        sa.Column("not_billable_code", sa.String(40), nullable=False, server_default=""),
    )
    op.add_column(
        "charges", sa.Column("minimum_seconds", sa.Integer(), nullable=False, server_default="0")
    )
    charges = sa.table(
        "charges",
        sa.column("charge_id", sa.String),
        sa.column("not_billable_reason", sa.String),
        sa.column("not_billable_code", sa.String),
        sa.column("minimum_seconds", sa.Integer),
    )
    connection = op.get_bind()
    rows = connection.execute(
        sa.select(charges.c.charge_id, charges.c.not_billable_reason).where(
            charges.c.not_billable_reason != ""
        )
    ).all()
    for charge_id, note in rows:
        code = next((c for c in CODES if note.startswith(c)), "")
        needed = _seconds_needed(note)
        connection.execute(
            charges.update()
            .where(charges.c.charge_id == charge_id)
            .values(not_billable_code=code, minimum_seconds=needed)
        )


def _seconds_needed(note: str) -> int:
    for marker in ("needs ", "more than "):
        at = note.rfind(marker)
        if at >= 0:
            number = note[at + len(marker) :].split(" ", 1)[0]
            if number.isdigit():
                return int(number)
    return 0


def downgrade() -> None:
    op.drop_column("charges", "minimum_seconds")
    op.drop_column("charges", "not_billable_code")
