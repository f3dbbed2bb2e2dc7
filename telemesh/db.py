"""Database engines, transactions and migrations for every service.

Each service owns one database: SQLite under TELEMESH_HOME by default, PostgreSQL (or
any SQLAlchemy URL) by TELEMESH_DATABASE_URL. Schemas are managed by Alembic, one
migration history per service (`svc_<name>/migrations`), applied on start.

SQLite files are created 0600 before SQLite opens them (SQLite gives its -wal and -shm
files the database file's mode). SQLite specifics: WAL journal, `synchronous=FULL` (a
commit the caller was told about survives a crash), foreign keys on, and write
transactions opened with `BEGIN IMMEDIATE` so that a read-then-write transaction is
serializable; writers in one process queue on a lock instead of spinning on SQLITE_BUSY.

Why WAL with FULL, chosen for durability over speed (issue 15): in WAL mode a commit
appends to the -wal file; FULL fsyncs that file before the commit returns, so once a
caller is answered its write survives a process crash, an OS crash and a power loss.
NORMAL would fsync only at checkpoints: never corrupt, and safe against a process
crash, but an OS crash or power loss could roll back the last commits, answers already
given included, which the project's rule ("what a caller was told succeeded is
durable") forbids. What a crash can lose under FULL: only transactions that had not
committed, whose callers got no answer (or an error) and whose retries, with the same
request_id, run them again. Measured under the booking benchmark, FULL's one fsync per
commit (about 0.2 ms on the benchmark machine's disk) was lost in the run-to-run noise
beside NORMAL; the booking's cost is its round trips and its Python work, not the sync.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractContextManager, asynccontextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from alembic import command
from alembic.config import Config
from opentelemetry import trace
from sqlalchemy import event, exc
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlmodel.ext.asyncio.session import AsyncSession

from telemesh.config import load, setting
from telemesh.file_modes import private_file, sqlite_file

T = TypeVar("T")
logger = logging.getLogger("telemesh.db")
_db_tracer = trace.get_tracer("telemesh.db")


def is_sqlite(url: str) -> bool:
    return make_url(url).get_backend_name() == "sqlite"


def async_url(url: str) -> str:
    """The URL with an asyncio driver (aiosqlite, psycopg)."""
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        return parsed.set(drivername="sqlite+aiosqlite").render_as_string(hide_password=False)
    if backend == "postgresql":
        return parsed.set(drivername="postgresql+psycopg").render_as_string(hide_password=False)
    return url


def sync_url(url: str) -> str:
    """The URL with a blocking driver, for Alembic."""
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        return parsed.set(drivername="sqlite").render_as_string(hide_password=False)
    if backend == "postgresql":
        return parsed.set(drivername="postgresql+psycopg").render_as_string(hide_password=False)
    return url


def _on_sqlite_connect(dbapi_connection: Any, _record: Any) -> None:
    # Let SQLAlchemy's begin event issue BEGIN itself (pysqlite would defer it).
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    for pragma in (
        # Deliberate (see the module's docstring): an answered commit is on disk.
        "PRAGMA journal_mode=WAL",
        "PRAGMA synchronous=FULL",
        "PRAGMA foreign_keys=ON",
        "PRAGMA busy_timeout=15000",
        # Deleted content (a value before it was sealed or re-sealed) is zeroed, not
        # left readable in free pages.
        "PRAGMA secure_delete=ON",
    ):
        cursor.execute(pragma)
    cursor.close()


def _attach_sqlite_events(engine: AsyncEngine, begin: str) -> None:
    event.listen(engine.sync_engine, "connect", _on_sqlite_connect)

    def on_begin(connection: Connection) -> None:
        connection.exec_driver_sql(begin)

    event.listen(engine.sync_engine, "begin", on_begin)


def _trace_statements(engine: AsyncEngine) -> None:
    """A CLIENT span per SQL statement, under the current span, when that one records
    (TELEMESH_TRACE_SQL_STATEMENTS; by default a transaction is one span).

    The span carries the statement's text (bound parameters never: they may be PHI) and
    the database's name, never the server's address. Traffic that is not sampled pays
    one check per statement.
    """
    backend = engine.dialect.name
    database = Path(engine.url.database or "").name if backend == "sqlite" else engine.url.database

    def before(
        conn: Any, cursor: Any, statement: str, params: Any, context: Any, many: Any
    ) -> None:
        if not trace.get_current_span().is_recording():
            return
        operation = statement.split(None, 1)[0].upper() if statement.strip() else "SQL"
        context._telemesh_span = _db_tracer.start_span(
            f"{operation} {database}",
            kind=trace.SpanKind.CLIENT,
            attributes={
                "db.system": backend,
                "db.name": database or "",
                "db.operation": operation,
                "db.statement": statement,
            },
        )

    def after(conn: Any, cursor: Any, statement: str, params: Any, context: Any, many: Any) -> None:
        span = getattr(context, "_telemesh_span", None)
        if span is not None:
            span.end()
            context._telemesh_span = None

    def failed(exception_context: Any) -> None:
        span = getattr(exception_context.execution_context, "_telemesh_span", None)
        if span is not None:
            span.set_status(
                trace.Status(
                    trace.StatusCode.ERROR, type(exception_context.original_exception).__name__
                )
            )
            span.end()
            exception_context.execution_context._telemesh_span = None

    event.listen(engine.sync_engine, "before_cursor_execute", before)
    event.listen(engine.sync_engine, "after_cursor_execute", after)
    event.listen(engine.sync_engine, "handle_error", failed)


def _is_transient(error: BaseException) -> bool:
    """A conflict that a retry of the whole transaction resolves."""
    if isinstance(error, exc.DBAPIError):
        if error.connection_invalidated:  # the server dropped the connection
            return True
        sqlstate = getattr(error.orig, "sqlstate", None)
        if sqlstate in ("40001", "40P01"):  # serialization failure, deadlock
            return True
        if "database is locked" in str(error.orig):
            return True
    return False


def unreachable(error: BaseException) -> bool:
    """The database could not be reached or dropped the connection (restarted, cut by
    an administrator, failed over): the call may be retried, here or on a replica."""
    return isinstance(error, exc.DBAPIError) and (
        error.connection_invalidated or isinstance(error, exc.OperationalError)
    )


@dataclass(frozen=True)
class DatabaseSettings:
    trace_statements: bool = setting(
        "TELEMESH_TRACE_SQL_STATEMENTS",
        False,
        "A span per SQL statement (off: one span per transaction, cheaper).",
    )


class Database:
    """A service's database: a write path and a read path over one URL."""

    def __init__(self, url: str, *, pool_size: int = 10) -> None:
        self.url = url
        self.sqlite = is_sqlite(url)
        database = sqlite_file(url)
        if database is not None:
            private_file(database)  # its -wal and -shm files take its mode
        parsed = make_url(url)
        self.backend = parsed.get_backend_name()
        # The database's name only (a file's name for SQLite), never a host or a path.
        self.name = Path(parsed.database or "").name if self.sqlite else (parsed.database or "")
        options: dict[str, Any] = {"hide_parameters": True}  # values may be PHI
        if not self.sqlite:
            # No pre-ping: it costs a round trip per transaction. A connection the server
            # dropped fails its first statement and the whole transaction is retried.
            options.update(pool_size=pool_size, max_overflow=pool_size, pool_recycle=600)
        self.write_engine = create_async_engine(async_url(url), **options)
        if self.sqlite:
            self.read_engine = create_async_engine(async_url(url), **options)
            _attach_sqlite_events(self.write_engine, "BEGIN IMMEDIATE")
            _attach_sqlite_events(self.read_engine, "BEGIN")
        else:
            self.read_engine = self.write_engine
        if load(DatabaseSettings).trace_statements:
            for engine in {self.write_engine, self.read_engine}:
                _trace_statements(engine)
        self._writes = async_sessionmaker(
            self.write_engine, class_=AsyncSession, expire_on_commit=False
        )
        self._reads = async_sessionmaker(
            self.read_engine, class_=AsyncSession, expire_on_commit=False
        )
        # SQLite has one writer at a time; queue ours here rather than on SQLITE_BUSY.
        self._write_lock = asyncio.Lock() if self.sqlite else None

    @asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncSession]:
        """A read-write transaction, committed when the block ends without error."""
        with self._span("write"):
            if self._write_lock is not None:
                async with self._write_lock, self._writes() as session, session.begin():
                    yield session
            else:
                async with self._writes() as session, session.begin():
                    yield session

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncSession]:
        """A read-only transaction (never blocks writers on SQLite's WAL)."""
        with self._span("read"):
            async with self._reads() as session, session.begin():
                yield session

    def _span(self, kind: str) -> AbstractContextManager[Any]:
        """A CLIENT span for the transaction, when the current span records: the time a
        call spends in its database, at the cost of one span (statement spans are
        TELEMESH_TRACE_SQL_STATEMENTS)."""
        if not trace.get_current_span().is_recording():
            return nullcontext()
        return _db_tracer.start_as_current_span(
            f"db {kind} {self.name}",
            kind=trace.SpanKind.CLIENT,
            attributes={"db.system": self.backend, "db.name": self.name, "db.operation": kind},
        )

    async def run_write(
        self, work: Callable[[AsyncSession], Awaitable[T]], *, attempts: int = 6
    ) -> T:
        """Runs `work` in a write transaction, retrying the whole of it on a
        serialization failure or deadlock."""
        for attempt in range(1, attempts + 1):
            try:
                async with self.write() as session:
                    return await work(session)
            except exc.DBAPIError as error:
                if attempt == attempts or not _is_transient(error):
                    raise
                await asyncio.sleep(random.uniform(0, 0.01 * 2**attempt))
        raise AssertionError("unreachable")

    async def dispose(self) -> None:
        await self.write_engine.dispose()
        if self.read_engine is not self.write_engine:
            await self.read_engine.dispose()


def migrate(package: str, url: str) -> None:
    """Brings `url` to the newest schema of service `package` (Alembic `upgrade head`)."""
    database = sqlite_file(url)
    if database is not None:
        private_file(database)
    config = Config()
    config.set_main_option("script_location", f"{package}:migrations")
    config.set_main_option("sqlalchemy.url", sync_url(url).replace("%", "%%"))
    command.upgrade(config, "head")


def run_migrations_env(target_metadata: Any) -> None:
    """The body of every service's `migrations/env.py`."""
    from alembic import context
    from sqlalchemy import create_engine, pool

    url = context.config.get_main_option("sqlalchemy.url")
    assert url is not None
    engine = create_engine(url, poolclass=pool.NullPool)
    with engine.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            render_as_batch=is_sqlite(url),
            compare_type=True,
        )
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()
