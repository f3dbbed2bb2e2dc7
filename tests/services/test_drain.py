"""SIGTERM during an in-flight call: the call finishes, is durable, then the process exits.

The call is held in flight by a real lock on the service's own database (a SQLite write
lock, a PostgreSQL table lock) taken by the test, as a slow disk or a busy table would.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
from sqlalchemy.engine import make_url

from telemesh.session.v1 import session_pb2, session_pb2_grpc
from tests.support.flows import rid
from tests.support.harness import Stack
from tests.support.polling import eventually


@contextmanager
def hold_write_lock(url: str) -> Iterator[Callable[[], None]]:
    """Blocks every writer of the database until the returned release() is called."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        conn = sqlite3.connect(Path(parsed.database or ""), isolation_level=None)
        conn.execute("BEGIN IMMEDIATE")
        release = conn.rollback
    else:
        pg = psycopg.connect(
            parsed.set(drivername="postgresql").render_as_string(hide_password=False)
        )
        pg.execute("LOCK TABLE patients IN ACCESS EXCLUSIVE MODE")
        release = pg.rollback
        conn = pg  # type: ignore[assignment]
    try:
        yield release
    finally:
        conn.close()


async def test_sigterm_lets_the_in_flight_call_finish(
    backend: str, make_stack: Callable[..., Stack]
) -> None:
    stack = make_stack(backend, "session")
    service = stack["session"]
    async with stack.channel("session") as channel:
        stub = session_pb2_grpc.SessionServiceStub(channel)
        request = session_pb2.CreatePatientRequest(
            request_id=rid(),
            patient=session_pb2.Patient(patient_id="p-drain", display_name="Dee Rain"),
        )
        md = stack.tokens.patient("p-drain")
        with hold_write_lock(service.env["TELEMESH_DATABASE_URL"]) as release:
            call = asyncio.ensure_future(stub.CreatePatient(request, metadata=md, timeout=30))
            await asyncio.sleep(1.0)  # the call is in flight, waiting on the lock
            assert not call.done()
            assert service.process is not None
            service.process.terminate()  # SIGTERM

            async def draining() -> bool:
                return '"message": "draining"' in service.logs()

            await eventually(draining)
            assert service.running, "the process waits for its in-flight call"
            release()
        reply = await call
        assert reply.patient.patient_id == "p-drain"
    assert service.process is not None
    exit_code = await asyncio.to_thread(service.process.wait, 15)
    assert exit_code == 0, service.logs()[-2000:]
    assert '"message": "draining"' in service.logs()
    # What the caller was told succeeded is there after a restart.
    service.start().wait_ready()
    async with stack.channel("session") as channel:
        stub = session_pb2_grpc.SessionServiceStub(channel)
        again = await stub.GetPatient(
            session_pb2.GetPatientRequest(patient_id="p-drain"), metadata=md
        )
        assert again.patient.display_name == "Dee Rain"
