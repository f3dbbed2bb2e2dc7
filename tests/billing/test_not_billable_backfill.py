"""Migration 0004 gives charges recorded before it their not-billable code and the
connected time their rule needed, from the note the coding rules wrote."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic import command
from alembic.config import Config

from svc_billing.models import ChargeRow
from telemesh.db import migrate, sync_url

NOTES = {
    "c-short": (
        "below-minimum-time: 599 s connected; the lowest established-patient audio-video "
        "code 99212 needs 600 s (medicare-em@2025.1)",
        "below-minimum-time",
        600,
    ),
    "c-talk": (
        "audio-only-discussion-too-short: 300 s connected; audio-only codes need more than "
        "600 s of medical discussion (cpt-telemedicine@2025.1)",
        "audio-only-discussion-too-short",
        600,
    ),
    "c-billable": ("", "", 0),
}


def _value(column: sa.Column[Any], charge_id: str) -> Any:
    """A stand-in value of the column's type (only the note matters here)."""
    if column.name == "charge_id":
        return charge_id
    if column.name == "visit_id":
        return f"visit-{charge_id}"
    kind: Any = column.type
    if isinstance(kind, sa.TypeDecorator):  # an instant (UtcDateTime) and the like
        kind = kind.impl
    if isinstance(kind, sa.JSON):
        return []
    if isinstance(kind, sa.Boolean):
        return False
    if isinstance(kind, sa.Integer | sa.BigInteger):
        return 0
    if isinstance(kind, sa.DateTime):
        return dt.datetime(2026, 12, 1, tzinfo=dt.UTC)
    if isinstance(kind, sa.Date):
        return dt.date(2026, 12, 1)
    return "x"


def test_charges_recorded_before_get_their_code_and_needed_time(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'billing.db'}"
    migrate("svc_billing", url)
    table: sa.Table = ChargeRow.__table__  # type: ignore[attr-defined]
    engine = sa.create_engine(sync_url(url))
    with engine.begin() as connection:
        for charge_id, (note, _, _) in NOTES.items():
            row = {column.name: _value(column, charge_id) for column in table.columns}
            row.update(not_billable_reason=note, not_billable_code="", minimum_seconds=0)
            connection.execute(table.insert().values(row))
    config = Config()
    config.set_main_option("script_location", "svc_billing:migrations")
    config.set_main_option("sqlalchemy.url", sync_url(url))
    command.downgrade(config, "0003")  # as the charges were before 0004
    command.upgrade(config, "head")
    with engine.connect() as connection:
        found = {
            charge_id: (code, seconds)
            for charge_id, code, seconds in connection.execute(
                sa.select(table.c.charge_id, table.c.not_billable_code, table.c.minimum_seconds)
            )
        }
    engine.dispose()
    assert found == {charge_id: (code, seconds) for charge_id, (_, code, seconds) in NOTES.items()}
