"""Room for sealed request digests, as in every service (telemesh.shared_tables): the
idempotency table has one shape in all four databases.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02
"""

from collections.abc import Sequence

from telemesh.shared_tables import narrow_request_digests, widen_request_digests

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    widen_request_digests()


def downgrade() -> None:
    narrow_request_digests()
