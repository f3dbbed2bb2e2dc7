"""PHI at rest: a charge's diagnosis codes and completion digest held as ciphertext.

`charges.diagnosis_codes` (JSON) becomes `diagnosis_codes_enc` (text: the JSON list,
sealed); `charges.completion_digest` and `idempotency_records.request_digest` widen to
text for sealed values. A migration cannot read the PHI keys, so it moves no values:
rows written before it keep their JSON text and plain digests until the service seals
them at start, before it serves (`telemesh.phi_sealing.seal_plaintext`).

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from telemesh.shared_tables import narrow_request_digests, widen_request_digests

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("charges") as table:
        table.alter_column(
            "diagnosis_codes",
            type_=sa.Text(),
            existing_type=sa.JSON(),
            existing_nullable=False,
            postgresql_using="diagnosis_codes::text",
        )
    with op.batch_alter_table("charges") as table:
        table.alter_column(
            "diagnosis_codes",
            new_column_name="diagnosis_codes_enc",
            existing_type=sa.Text(),
            existing_nullable=False,
        )
        table.alter_column(
            "completion_digest",
            type_=sa.Text(),
            existing_type=sa.String(64),
            existing_nullable=False,
        )
    widen_request_digests()


def downgrade() -> None:
    # Sealed values stay sealed (no migration can read the keys): only names and types
    # go back, and only on a database with nothing sealed yet.
    narrow_request_digests()
    with op.batch_alter_table("charges") as table:
        table.alter_column(
            "completion_digest",
            type_=sa.String(64),
            existing_type=sa.Text(),
            existing_nullable=False,
        )
        table.alter_column(
            "diagnosis_codes_enc",
            new_column_name="diagnosis_codes",
            existing_type=sa.Text(),
            existing_nullable=False,
        )
    with op.batch_alter_table("charges") as table:
        table.alter_column(
            "diagnosis_codes",
            type_=sa.JSON(),
            existing_type=sa.Text(),
            existing_nullable=False,
            postgresql_using="diagnosis_codes::json",
        )
