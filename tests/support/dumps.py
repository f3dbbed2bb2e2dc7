"""Everything a service's database holds, as text to search: what an attacker with a
copy of the files (SQLite, with its journal) or of every table (PostgreSQL) reads."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import psycopg
from sqlalchemy.engine import make_url

from tests.support.harness import Stack


def dump_sqlite(path: Path) -> str:
    raw = b"".join(p.read_bytes() for p in path.parent.glob(path.name + "*"))
    with sqlite3.connect(path) as conn:
        text = "\n".join(conn.iterdump())
    return raw.decode("latin-1") + text


def dump_postgres(url: str) -> str:
    conninfo = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    lines = []
    with psycopg.connect(conninfo) as conn:
        tables = conn.execute(
            "select tablename from pg_tables where schemaname = 'public'"
        ).fetchall()
        for (table,) in tables:
            for row in conn.execute(f'select * from "{table}"').fetchall():
                lines.append(repr(row))
    return "\n".join(lines)


def dump_service_database(stack: Stack, service: str) -> str:
    """The database of one service of a running stack, on the stack's backend."""
    url = stack[service].env["TELEMESH_DATABASE_URL"]
    if stack.backend == "sqlite":
        return dump_sqlite(Path(make_url(url).database or ""))
    return dump_postgres(url)
