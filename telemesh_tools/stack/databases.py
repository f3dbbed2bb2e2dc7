"""The databases of a replicated local stack: one PostgreSQL database per service on
the server `telemesh up --database URL` names, created when missing.

Replicas of a service share its database; SQLite has one writer per file, so a stack
of more than one replica refuses it.
"""

from __future__ import annotations

from collections.abc import Sequence

import psycopg
from psycopg import sql
from sqlalchemy.engine import make_url


class DatabaseChoiceError(ValueError):
    """The database URL cannot carry the stack asked for."""


def database_name(prefix: str, service: str) -> str:
    """The name of `service`'s database on the server `--database` names."""
    return f"{prefix}_{service}"


def service_databases(url: str, services: Sequence[str], replicas: int) -> dict[str, str]:
    """Each service's own database on the server of `url` (a PostgreSQL URL whose
    database name is the prefix: `.../telemesh` gives `telemesh_session`, ...), created
    when missing; nothing (each service's SQLite file) when `url` is empty."""
    if not url:
        if replicas > 1:
            raise DatabaseChoiceError(
                f"{replicas} replicas need PostgreSQL (--database "
                "postgresql://user@host:5432/telemesh): SQLite has one writer per database"
            )
        return {}
    parsed = make_url(url)
    if not parsed.drivername.startswith("postgresql"):
        raise DatabaseChoiceError(
            f"--database must be a PostgreSQL URL (postgresql://...), not {parsed.drivername}"
        )
    prefix = parsed.database or "telemesh"
    # Databases are created from the server's maintenance database.
    admin = parsed.set(drivername="postgresql", database="postgres").render_as_string(
        hide_password=False
    )
    names = {service: database_name(prefix, service) for service in services}
    with psycopg.connect(admin, autocommit=True) as connection:
        existing = {
            row[0] for row in connection.execute("SELECT datname FROM pg_database").fetchall()
        }
        for name in names.values():
            if name not in existing:
                connection.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return {
        service: parsed.set(drivername="postgresql+psycopg", database=name).render_as_string(
            hide_password=False
        )
        for service, name in names.items()
    }
