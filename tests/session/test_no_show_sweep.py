"""The no-show sweep, run in-process against a real database holding overdue visits
(a visit's slot cannot be in the past through the API, so the rows are written here)."""

from __future__ import annotations

import base64
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from svc_session import booking, convert, visits
from svc_session.models import SlotClaimRow, VisitRow
from svc_session.requests import CheckIn, Completion
from telemesh.auth import Principal
from telemesh.db import Database
from telemesh.errors import FailedPrecondition
from telemesh.field_crypto import FieldCipher, FieldKeys
from telemesh.session.v1 import session_pb2
from tests.support.harness import migrated_database

S = session_pb2.VisitState
GRACE = timedelta(minutes=15)


@pytest.fixture
async def db(backend: str, tmp_path: Path) -> AsyncIterator[Database]:
    async with migrated_database(backend, tmp_path, "session") as database:
        yield database


async def _visit(db: Database, started_ago: timedelta, state: int) -> str:
    now = datetime.now(UTC)
    visit_id = str(uuid.uuid4())
    async with db.write() as session:
        visit = VisitRow(
            visit_id=visit_id,
            patient_id="p-1",
            clinician_id="c-1",
            practice_id="pr-1",
            start_time=now - started_ago,
            end_time=now - started_ago + timedelta(minutes=30),
            state=state,
            create_time=now,
            update_time=now,
        )
        session.add(visit)
        session.add(
            SlotClaimRow(clinician_id="c-1", block=int(uuid.uuid4().int % 10**9), visit_id=visit_id)
        )
    return visit_id


async def test_overdue_booked_visits_become_no_shows(db: Database) -> None:
    overdue = await _visit(db, timedelta(minutes=20), S.VISIT_STATE_BOOKED)
    in_grace = await _visit(db, timedelta(minutes=5), S.VISIT_STATE_BOOKED)
    waiting = await _visit(db, timedelta(minutes=20), S.VISIT_STATE_CHECKED_IN)
    async with db.read() as session:
        found = await booking.overdue_visits(session, GRACE)
    assert overdue in found
    assert in_grace not in found
    assert waiting not in found, "a patient in the waiting room is not a no-show"
    sweeper = Principal("service", "session")
    async with db.write() as session:
        marked = await booking.mark_no_show(session, sweeper, overdue, GRACE, by_sweeper=True)
        reply = await convert.visit(session, marked, check_in_window=timedelta(minutes=15))
    assert reply.state == S.VISIT_STATE_NO_SHOW
    assert (reply.transitions[-1].actor_role, reply.transitions[-1].actor_id) == (
        "service",
        "session",
    )
    async with db.read() as session:
        claims = (
            await session.exec(select(SlotClaimRow).where(SlotClaimRow.visit_id == overdue))
        ).all()
    assert not claims, "a no-show frees its slot"


@pytest.mark.parametrize("action", ["check_in", "admit", "complete", "no_show"])
async def test_nothing_follows_a_no_show(db: Database, action: str) -> None:
    visit_id = await _visit(db, timedelta(minutes=20), S.VISIT_STATE_NO_SHOW)
    patient, clinician = Principal("patient", "p-1"), Principal("clinician", "c-1")
    calls: dict[str, Callable[[AsyncSession], Awaitable[object]]] = {
        "check_in": lambda s: visits.check_in(
            s, patient, CheckIn(visit_id, session_pb2.PATIENT_LOCATION_HOME), GRACE
        ),
        "admit": lambda s: visits.admit(s, clinician, visit_id),
        "complete": lambda s: visits.complete(
            s,
            FieldCipher(FieldKeys.parse(f"k1:{base64.b64encode(bytes(32)).decode()}")),
            clinician,
            Completion(visit_id, ("J06.9",), audio_only=False),
        ),
        "no_show": lambda s: booking.mark_no_show(s, clinician, visit_id, GRACE),
    }
    with pytest.raises(FailedPrecondition) as caught:
        async with db.write() as session:
            await calls[action](session)
    assert caught.value.reason == "ILLEGAL_TRANSITION"
