"""Starting real processes for tests: `python -m svc_<name>`, each with its own database,
on a free port, stopped by its own process id; and `telemesh up`, the whole mesh."""

from __future__ import annotations

import contextlib
import os
import socket
import ssl
import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

import grpc
import psycopg
from cryptography import x509
from sqlalchemy.engine import make_url

from telemesh.config import SERVICES
from telemesh.db import Database, migrate
from telemesh.identity.tokens import DevIssuer
from telemesh_tools.stack.databases import database_name
from telemesh_tools.stack.endpoints import start_up, telemesh_command
from telemesh_tools.stack.process import ManagedProcess, free_port, module_process, stop_all

REPO = Path(__file__).resolve().parents[2]
PG_BASE_URL = os.environ.get("TELEMESH_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")


def bearer(token: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),)


class Tokens:
    """Mints dev tokens for tests, as `telemesh token` does."""

    def __init__(self, home: Path) -> None:
        self.issuer = DevIssuer(home)

    def patient(self, patient_id: str) -> tuple[tuple[str, str], ...]:
        return bearer(self.issuer.mint(patient_id, "patient"))

    def clinician(self, clinician_id: str) -> tuple[tuple[str, str], ...]:
        return bearer(self.issuer.mint(clinician_id, "clinician"))

    def role(self, role: str, subject: str) -> tuple[tuple[str, str], ...]:
        return bearer(self.issuer.mint(subject, role))

    def service(self, name: str) -> tuple[tuple[str, str], ...]:
        return bearer(self.issuer.mint(name, "service"))


# --- databases -------------------------------------------------------------------


def _admin_conninfo() -> str:
    url = make_url(PG_BASE_URL)
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


def create_pg_database(prefix: str) -> str:
    """A fresh, empty PostgreSQL database; returns its SQLAlchemy URL."""
    name = f"tm_{prefix}_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(_admin_conninfo(), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = make_url(PG_BASE_URL).set(drivername="postgresql+psycopg", database=name)
    return url.render_as_string(hide_password=False)


def drop_pg_database(url: str) -> None:
    name = make_url(url).database
    with psycopg.connect(_admin_conninfo(), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def cut_pg_connections(database: str) -> int:
    """Terminates every server connection to `database` (as an administrator, a restart
    or a failover would); how many there were."""
    with psycopg.connect(_admin_conninfo(), autocommit=True) as conn:
        rows = conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = %s AND pid <> pg_backend_pid()",
            (database,),
        ).fetchall()
    return len(rows)


@dataclass(frozen=True)
class FleetDatabases:
    """Fresh PostgreSQL databases for `telemesh up --replicas N --database URL`, which
    makes one per service from the URL's database name (`<prefix>_<service>`)."""

    prefix: str

    def up_args(self, replicas: int) -> tuple[str, ...]:
        server = make_url(PG_BASE_URL).set(database=self.prefix)
        url = server.render_as_string(hide_password=False)
        return ("--replicas", str(replicas), "--database", url)

    def of(self, service: str) -> str:
        return database_name(self.prefix, service)


@contextlib.contextmanager
def fleet_databases(label: str) -> Iterator[FleetDatabases]:
    """The databases of one replicated stack, dropped at the end."""
    databases = FleetDatabases(f"tm_{label}_{uuid.uuid4().hex[:8]}")
    try:
        yield databases
    finally:
        with psycopg.connect(_admin_conninfo(), autocommit=True) as conn:
            for service in SERVICES:
                conn.execute(f'DROP DATABASE IF EXISTS "{databases.of(service)}" WITH (FORCE)')


@contextlib.contextmanager
def database_url(backend: str, home: Path, service: str) -> Iterator[str]:
    """A database for one service on `backend` ("sqlite" or "postgres")."""
    if backend == "sqlite":
        yield f"sqlite:///{home / f'{service}.db'}"
        return
    url = create_pg_database(service)
    try:
        yield url
    finally:
        drop_pg_database(url)


@contextlib.asynccontextmanager
async def migrated_database(backend: str, home: Path, service: str) -> AsyncIterator[Database]:
    """A fresh database of `service` at its newest schema, for tests that run a
    service's code in-process."""
    with database_url(backend, home, service) as url:
        migrate(f"svc_{service}", url)
        database = Database(url)
        try:
            yield database
        finally:
            await database.dispose()


# --- processes --------------------------------------------------------------------


def service_process(name: str, address: str, env: dict[str, str], log_path: Path) -> ManagedProcess:
    """`python -m svc_<name>`, ready when its health service says SERVING."""
    return module_process(f"svc_{name}", f"svc_{name}", env, log_path, address, cwd=REPO)


class Stack:
    """Services started for one test, wired to each other, each with its own database."""

    def __init__(self, home: Path, backend: str, extra_env: Mapping[str, str] | None = None):
        self.home = home
        self.backend = backend
        self.extra_env = dict(extra_env or {})
        self.addresses = {name: f"127.0.0.1:{free_port()}" for name in SERVICES}
        self.services: dict[str, ManagedProcess] = {}
        self._databases = contextlib.ExitStack()
        self.tokens = Tokens(home)

    def env_for(self, name: str, database: str) -> dict[str, str]:
        env = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith(("TELEMESH_", "OTEL_"))
        }
        env.update(
            TELEMESH_HOME=str(self.home),
            TELEMESH_LISTEN=self.addresses[name],
            TELEMESH_DATABASE_URL=database,
            TELEMESH_DRAIN_SECONDS="10",
            OTEL_TRACES_EXPORTER="none",
            OTEL_METRICS_EXPORTER="none",
            PYTHONUNBUFFERED="1",
        )
        for peer in SERVICES:
            env[f"TELEMESH_{peer.upper()}_ADDR"] = self.addresses[peer]
        env.update(self.extra_env)
        return env

    def start(self, *names: str, env: Mapping[str, str] | None = None) -> Stack:
        for name in names:
            database = self._databases.enter_context(database_url(self.backend, self.home, name))
            service = service_process(
                name,
                self.addresses[name],
                {**self.env_for(name, database), **(env or {})},
                self.home / f"{name}.log",
            )
            self.services[name] = service.start()
        for name in names:
            self.services[name].wait_ready()
        return self

    def __getitem__(self, name: str) -> ManagedProcess:
        return self.services[name]

    def channel(self, name: str) -> grpc.aio.Channel:
        return grpc.aio.insecure_channel(self.addresses[name])

    def logs(self) -> str:
        return "\n".join(service.logs() for service in self.services.values())

    def close(self) -> None:
        stop_all(self.services.values())  # they drain at once
        self._databases.close()


# --- the whole mesh ---------------------------------------------------------------


def clean_env(home: Path, **extra: str) -> dict[str, str]:
    """This environment without Telemesh's and OpenTelemetry's settings, in `home`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TELEMESH_", "OTEL_"))}
    env.update(TELEMESH_HOME=str(home), PYTHONUNBUFFERED="1", **extra)
    return env


@dataclass
class MeshUp:
    """`telemesh up` in a home of its own, as a developer runs it (the mesh and web
    tests), and where it says everything is (its endpoints.json)."""

    home: Path
    process: ManagedProcess
    endpoints: dict[str, Any]

    @classmethod
    def start(cls, home: Path, *up_args: str, **env: str) -> Self:
        process, endpoints = start_up(
            home, clean_env(home, **env), home / "telemesh-up.log", cwd=REPO, up_args=up_args
        )
        return cls(home, process, endpoints)

    @property
    def edge_url(self) -> str:
        return str(self.endpoints["edge"]["url"])

    @property
    def edge_address(self) -> str:
        return str(self.endpoints["edge"]["address"])

    @property
    def edge_target(self) -> str:
        """The edge by name: its certificate names localhost."""
        return f"localhost:{self.edge_address.rsplit(':', 1)[1]}"

    @property
    def ca_bundle(self) -> Path:
        return Path(self.endpoints["ca_bundle"])

    def edge_certificate(self) -> x509.Certificate:
        """The certificate the edge serves now (verified against the local CA)."""
        context = ssl.create_default_context(cafile=str(self.ca_bundle))
        host, port = self.edge_address.rsplit(":", 1)
        with (
            socket.create_connection((host, int(port)), timeout=5) as raw,
            context.wrap_socket(raw, server_hostname="localhost") as tls,
        ):
            der = tls.getpeercert(binary_form=True)
        assert der is not None
        return x509.load_der_x509_certificate(der)

    def logs(self) -> str:
        """The supervisor's log, then the end of every process's log."""
        folder = Path(self.endpoints.get("logs", self.home / "mesh" / "logs"))
        parts = [self.process.logs()[-3000:]]
        parts += [
            f"--- {p.name}\n{p.read_text(errors='replace')[-3000:]}" for p in folder.glob("*.log")
        ]
        return "\n".join(parts)

    def down(self) -> subprocess.CompletedProcess[str]:
        """`telemesh down` in this home."""
        return subprocess.run(
            telemesh_command("down"),
            env=clean_env(self.home),
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=90,
        )

    def stop(self) -> None:
        self.process.stop(timeout=60)

    def close(self) -> None:
        """Stops the stack as its user would (`telemesh down`), then its process."""
        if self.process.running:
            self.down()
        self.stop()
