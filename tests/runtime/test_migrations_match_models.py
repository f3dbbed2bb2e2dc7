"""Each service's migrations build exactly the schema its models declare (Alembic's
autogenerate comparison finds nothing to add, drop or alter), on SQLite and PostgreSQL.

SQLModel keeps every table of the process in one MetaData; a service process imports only
its own models, so here each service's tables are the table models its `models` module
holds (its own and the runtime's shared ones it uses)."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import MetaData, create_engine, pool
from sqlmodel import SQLModel

from telemesh.db import migrate, sync_url
from tests.support.harness import database_url

SERVICES = ("session", "signaling", "consent", "billing")


def _differences(url: str, metadata: Any) -> list[Any]:
    engine = create_engine(sync_url(url), poolclass=pool.NullPool)
    try:
        with engine.connect() as connection:
            context = MigrationContext.configure(
                connection, opts={"compare_type": True, "compare_server_default": False}
            )
            return list(compare_metadata(context, metadata))
    finally:
        engine.dispose()


def service_metadata(service: str) -> MetaData:
    module = importlib.import_module(f"svc_{service}.models")
    metadata = MetaData()
    for value in vars(module).values():
        if isinstance(value, type) and issubclass(value, SQLModel) and hasattr(value, "__table__"):
            value.__table__.to_metadata(metadata)
    return metadata


@pytest.mark.parametrize("service", SERVICES)
def test_migrations_build_the_models(backend: str, tmp_path: Path, service: str) -> None:
    metadata = service_metadata(service)
    with database_url(backend, tmp_path, service) as url:
        migrate(f"svc_{service}", url)
        differences = _differences(url, metadata)
    assert not differences, "\n".join(str(d) for d in differences)
