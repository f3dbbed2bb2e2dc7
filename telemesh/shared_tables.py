"""The DDL of the tables every service's database holds for the runtime (idempotency
records), written once for the services' migrations. The runtime's models
(`telemesh.idempotency.IdempotencyRecord`) are the shape these steps reach;
tests/runtime/test_migrations_match_models.py checks each service's migrations against its
models on SQLite and PostgreSQL."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

IDEMPOTENCY_RECORDS = "idempotency_records"


def create_idempotency_records() -> None:
    """The table as every service's first migration made it (a hex digest of 64)."""
    op.create_table(
        IDEMPOTENCY_RECORDS,
        sa.Column("request_id", sa.String(64), primary_key=True),
        sa.Column("method", sa.String(200), nullable=False),
        sa.Column("request_digest", sa.String(64), nullable=False),
        sa.Column("response", sa.LargeBinary(), nullable=False),
        sa.Column("create_time", sa.DateTime(timezone=True), nullable=False),
    )


def drop_idempotency_records() -> None:
    op.drop_table(IDEMPOTENCY_RECORDS)


def widen_request_digests() -> None:
    """Room for sealed digests (a request that carries PHI has its digest sealed)."""
    with op.batch_alter_table(IDEMPOTENCY_RECORDS) as table:
        table.alter_column(
            "request_digest", type_=sa.Text(), existing_type=sa.String(64), existing_nullable=False
        )


def narrow_request_digests() -> None:
    with op.batch_alter_table(IDEMPOTENCY_RECORDS) as table:
        table.alter_column(
            "request_digest", type_=sa.String(64), existing_type=sa.Text(), existing_nullable=False
        )
