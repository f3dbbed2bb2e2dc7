"""PHI at rest: diagnosis codes held as ciphertext; room for sealed request digests.

`visits.diagnosis_codes` becomes `diagnosis_codes_enc` (field-encrypted like the
profiles' `*_enc` columns). `idempotency_records.request_digest` widens to text: the
digest of a request that carries PHI is stored sealed (a bare SHA-256 of a few possible
diagnosis codes is guessable). A migration cannot read the PHI keys, so it moves no
values: rows written before it are sealed by the service at start, before it serves
(`telemesh.phi_sealing.seal_plaintext`).

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from telemesh.shared_tables import narrow_request_digests, widen_request_digests

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("visits") as table:
        table.alter_column(
            "diagnosis_codes",
            new_column_name="diagnosis_codes_enc",
            existing_type=sa.Text(),
            existing_nullable=False,
        )
    widen_request_digests()


def downgrade() -> None:
    # Sealed values stay sealed: a downgrade needs the keys' rotation pass reversed,
    # which no migration can do; only the names and types go back.
    narrow_request_digests()
    with op.batch_alter_table("visits") as table:
        table.alter_column(
            "diagnosis_codes_enc",
            new_column_name="diagnosis_codes",
            existing_type=sa.Text(),
            existing_nullable=False,
        )
