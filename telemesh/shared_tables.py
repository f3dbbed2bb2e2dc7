"""The DDL of the tables the runtime keeps in a service's database (idempotency records
in every service, the outbox in those that send events), written once for the services'
migrations. The runtime's models (`telemesh.idempotency.IdempotencyRecord`,
`telemesh.outbox.OutboxEvent`) are the shape these steps reach;
tests/runtime/test_migrations_match_models.py checks each service's migrations against its
models on SQLite and PostgreSQL."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

IDEMPOTENCY_RECORDS = "idempotency_records"
OUTBOX_EVENTS = "outbox_events"
Instant = sa.DateTime(timezone=True)


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


def create_outbox_events(*, dead_letters: bool = True) -> None:
    """The outbox table; `dead_letters=False` is its first shape (the session service's,
    which `add_dead_letters` brought to this one)."""
    columns: list[sa.schema.SchemaItem] = [
        sa.Column("event_id", sa.String(36), primary_key=True),
        sa.Column("target", sa.String(40), nullable=False),
        sa.Column("method", sa.String(200), nullable=False),
        sa.Column("key", sa.String(100), nullable=False, index=True),
        sa.Column("payload", sa.LargeBinary(), nullable=False),
        sa.Column("traceparent", sa.String(100), nullable=False),
        sa.Column("create_time", Instant, nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_time", Instant, nullable=False),
        sa.Column("lease_until", Instant, nullable=True),
        sa.Column("delivered_time", Instant, nullable=True, index=True),
    ]
    if dead_letters:
        columns.append(sa.Column("dead_time", Instant, nullable=True))
    columns.append(sa.Column("last_error", sa.String(200), nullable=False))
    op.create_table(OUTBOX_EVENTS, *columns)


def add_dead_letters() -> None:
    with op.batch_alter_table(OUTBOX_EVENTS) as table:
        table.add_column(sa.Column("dead_time", Instant, nullable=True))


def drop_dead_letters() -> None:
    with op.batch_alter_table(OUTBOX_EVENTS) as table:
        table.drop_column("dead_time")
