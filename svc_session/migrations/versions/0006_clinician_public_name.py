"""The name patients see of a clinician (clinicians.public_name), not sealed: it is the
clinician's professional name, not PHI.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "clinicians",
        sa.Column("public_name", sa.String(200), nullable=False, server_default=""),
    )


def downgrade() -> None:
    op.drop_column("clinicians", "public_name")
