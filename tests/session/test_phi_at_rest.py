"""A database dump shows no readable name, birth date, email or phone."""

from __future__ import annotations

import sqlite3
import uuid
from pathlib import Path

import psycopg
from sqlalchemy.engine import make_url

from telemesh.session.v1 import session_pb2
from tests.flows import Flows
from tests.harness import Stack


def _dump_sqlite(path: Path) -> str:
    raw = b"".join(p.read_bytes() for p in path.parent.glob(path.name + "*"))
    with sqlite3.connect(path) as conn:
        text = "\n".join(conn.iterdump())
    return raw.decode("latin-1") + text


def _dump_postgres(url: str) -> str:
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


async def test_no_phi_in_the_clear_in_the_database_or_the_logs(
    flows: Flows, session_stack: Stack
) -> None:
    marker = uuid.uuid4().hex[:8]
    phi = {
        "display_name": f"Zelda Quintessa {marker}",
        "birth_date": "1977-07-13",
        "email": f"zelda.{marker}@phi-example.org",
        "phone": f"+1 555 01{int(marker, 16) % 100:02d}",
    }
    visit = await flows.book(**phi)
    profile = await flows.session.GetPatient(
        session_pb2.GetPatientRequest(patient_id=visit.patient_id), metadata=visit.patient
    )
    assert profile.patient.email == phi["email"], "the service itself still reads it back"
    url = session_stack["session"].env["TELEMESH_DATABASE_URL"]
    if session_stack.backend == "sqlite":
        dump = _dump_sqlite(Path(make_url(url).database or ""))
    else:
        dump = _dump_postgres(url)
    assert visit.patient_id in dump, "the dump is real: it holds the patient's id"
    logs = session_stack.logs()
    for value in (phi["display_name"], marker, phi["birth_date"], phi["email"], phi["phone"]):
        assert value not in dump, f"{value!r} is readable in the database"
        assert value not in logs, f"{value!r} is in the logs"
