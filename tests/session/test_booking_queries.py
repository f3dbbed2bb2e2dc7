"""What one BookVisit costs in SQL statements, in-process against a real database, so
that a change that brings back a round trip fails here (timings are for the benchmarks).

The booking's own transaction is one query for every check (clinician, patient, weekly
hours, the exceptions of the slot's dates), then the claims, the visit and its first
transition (one statement on PostgreSQL, three on SQLite), then the idempotency record.
Its access-log entry is written in a transaction of its own (a group commit).
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, func
from sqlmodel import col, select

from svc_session.access_log import local_recorder
from svc_session.care import LocalCareSource
from svc_session.models import (
    AccessLogEntryRow,
    AvailabilityExceptionRow,
    AvailabilityRow,
    ClinicianRow,
    PatientRow,
    SlotClaimRow,
    VisitRow,
    VisitTransitionRow,
)
from svc_session.servicer import SessionDependencies, SessionServicer
from svc_session.settings import SessionSettings
from telemesh.auth import Principal, bind
from telemesh.care import PatientAccess
from telemesh.config import load
from telemesh.db import Database
from telemesh.errors import AlreadyExists, FailedPrecondition
from telemesh.field_crypto import FieldCipher, FieldKeys
from telemesh.idempotency import IdempotencyRecord
from telemesh.session.v1 import session_pb2
from telemesh.timestamps import timestamp
from tests.support.harness import migrated_database

P = session_pb2
CLINICIAN = "c-1"
PATIENT = "p-1"
# Every statement of the booking's own transaction, in order, by what it holds.
EXPECTED = {
    "sqlite": [
        ("BEGIN IMMEDIATE",),
        ("SELECT clinicians", "availability_exceptions"),  # every check: one query
        ("INSERT INTO slot_claims",),  # every block of the slot in one statement
        ("INSERT INTO visits",),
        ("INSERT INTO visit_transitions",),
        ("INSERT INTO idempotency_records",),
    ],
    "postgresql": [
        ("SELECT clinicians", "availability_exceptions"),
        # claims, visit and first transition: one statement
        ("INSERT INTO visits", "INSERT INTO visit_transitions", "INSERT INTO slot_claims"),
        ("INSERT INTO idempotency_records",),
    ],
}


@pytest.fixture
async def db(backend: str, tmp_path: Path) -> AsyncIterator[Database]:
    async with migrated_database(backend, tmp_path, "session") as database:
        now = datetime.now(UTC)
        async with database.write() as session:
            session.add(
                ClinicianRow(
                    clinician_id=CLINICIAN,
                    display_name_enc="",
                    birth_date_enc="",
                    email_enc="",
                    phone_enc="",
                    time_zone="America/New_York",
                    practice_id="pr-1",
                    create_time=now,
                )
            )
            session.add(
                PatientRow(
                    patient_id=PATIENT,
                    display_name_enc="",
                    birth_date_enc="",
                    email_enc="",
                    phone_enc="",
                    create_time=now,
                )
            )
            session.add(
                AvailabilityRow(
                    clinician_id=CLINICIAN,
                    time_zone="America/New_York",
                    slot_minutes=30,  # six blocks a slot
                    hours_json=json.dumps([[day, 0, 24 * 60] for day in range(1, 8)]),
                    update_time=now,
                )
            )
        yield database


def _servicer(db: Database) -> SessionServicer:
    access = PatientAccess(LocalCareSource(db), local_recorder(db))
    cipher = FieldCipher(FieldKeys.parse(f"k1:{base64.b64encode(bytes(32)).decode()}"))
    return SessionServicer(
        SessionDependencies(
            db=db,
            cipher=cipher,
            access=access,
            settings=load(SessionSettings),
            join_key=None,  # type: ignore[arg-type]  # BookVisit reads none of these
            telehealth_permitted=None,  # type: ignore[arg-type]
            outbox_committed=lambda: None,
        )
    )


@contextmanager
def statements(db: Database) -> Iterator[list[str]]:
    seen: list[str] = []

    def count(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        seen.append(" ".join(statement.split()))

    engines = {db.write_engine.sync_engine, db.read_engine.sync_engine}
    for engine in engines:
        event.listen(engine, "before_cursor_execute", count)
    try:
        yield seen
    finally:
        for engine in engines:
            event.remove(engine, "before_cursor_execute", count)


async def _book(
    servicer: SessionServicer, start: datetime
) -> tuple[P.BookVisitResponse, list[str]]:
    request = P.BookVisitRequest(
        request_id=str(uuid.uuid4()),
        clinician_id=CLINICIAN,
        patient_id=PATIENT,
        start_time=timestamp(start),
    )
    bind(Principal("patient", PATIENT), None)
    with statements(servicer.db) as seen:
        answer = await servicer.BookVisit(request, None)  # type: ignore[arg-type]
    return answer, list(seen)


def _next_morning() -> datetime:
    day = (datetime.now(UTC) + timedelta(days=2)).date()
    return datetime(day.year, day.month, day.day, 15, 0, tzinfo=UTC)


async def _count(db: Database, query: Any) -> int:
    async with db.read() as session:
        return int((await session.exec(query)).one())


async def test_one_booking_costs_one_query_and_its_writes(db: Database, backend: str) -> None:
    servicer = _servicer(db)
    start = _next_morning()
    async with db.write() as session:  # an exception that does not touch the slot
        session.add(
            AvailabilityExceptionRow(
                exception_id=str(uuid.uuid4()),
                clinician_id=CLINICIAN,
                local_date=start.date().isoformat(),
                kind=P.AVAILABILITY_EXCEPTION_KIND_TIME_OFF,
                start_local_time="20:00",
                end_local_time="21:00",
            )
        )
    await _book(servicer, start - timedelta(hours=1))  # warm: caches, prepared statements
    entries = await _count(db, select(func.count()).select_from(AccessLogEntryRow))
    answer, seen = await _book(servicer, start)

    dialect = db.write_engine.dialect.name
    booking = [s for s in seen if "access_log_" not in s]
    if dialect == "sqlite":  # the access log's transaction has a BEGIN IMMEDIATE too
        booking.remove("BEGIN IMMEDIATE")
    expected = EXPECTED[dialect]
    assert len(booking) == len(expected), "\n".join(booking)
    for statement, parts in zip(booking, expected, strict=True):
        assert all(part in statement for part in parts), f"{statement[:90]!r}: not {parts}"

    # ... and it wrote all it must.
    visit = answer.visit
    assert visit.state == P.VISIT_STATE_BOOKED
    assert [(t.from_state, t.to_state) for t in visit.transitions] == [
        (P.VISIT_STATE_UNSPECIFIED, P.VISIT_STATE_BOOKED)
    ]
    assert visit.end_time.ToDatetime(tzinfo=UTC) - start == timedelta(minutes=30)
    claims = select(func.count()).select_from(SlotClaimRow)
    assert await _count(db, claims.where(col(SlotClaimRow.visit_id) == visit.visit_id)) == 6
    for row, key in (
        (VisitRow, col(VisitRow.visit_id) == visit.visit_id),
        (VisitTransitionRow, col(VisitTransitionRow.visit_id) == visit.visit_id),
        (IdempotencyRecord, col(IdempotencyRecord.method) == "BookVisit"),
    ):
        assert await _count(db, select(func.count()).select_from(row).where(key)) >= 1
    assert await _count(db, select(func.count()).select_from(AccessLogEntryRow)) == entries + 1


async def test_exceptions_still_decide_the_slot(db: Database) -> None:
    """The one query reads the exceptions of the slot's local dates: time off on the
    slot's (New York) date refuses it, extra hours elsewhere do not make one."""
    servicer = _servicer(db)
    start = _next_morning()  # 10:00 or 11:00 in New York
    async with db.write() as session:
        session.add(
            AvailabilityExceptionRow(
                exception_id=str(uuid.uuid4()),
                clinician_id=CLINICIAN,
                local_date=start.date().isoformat(),
                kind=P.AVAILABILITY_EXCEPTION_KIND_TIME_OFF,
            )
        )
    with pytest.raises(FailedPrecondition) as refused:
        await _book(servicer, start)
    assert refused.value.reason == "NOT_A_SLOT"
    answer, _ = await _book(servicer, start + timedelta(days=1))
    assert answer.visit.state == P.VISIT_STATE_BOOKED
    with pytest.raises(AlreadyExists):
        await _book(servicer, start + timedelta(days=1))
