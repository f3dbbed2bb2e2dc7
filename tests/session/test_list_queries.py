"""A page of ListVisits costs the same number of queries whatever it holds (no query per
visit for its history), in-process against a real database."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event

from svc_session import convert, requests, visits
from svc_session.models import ConnectedPeriodRow, VisitRow, VisitTransitionRow
from telemesh.auth import Principal
from telemesh.db import Database
from telemesh.session.v1 import session_pb2
from tests.support.harness import migrated_database

S = session_pb2.VisitState


@pytest.fixture
async def db(backend: str, tmp_path: Path) -> AsyncIterator[Database]:
    async with migrated_database(backend, tmp_path, "session") as database:
        yield database


async def _visits(db: Database, patient_id: str, count: int) -> None:
    now = datetime.now(UTC)
    async with db.write() as session:
        for n in range(count):
            visit_id = str(uuid.uuid4())
            start = now + timedelta(hours=n + 1)
            session.add(
                VisitRow(
                    visit_id=visit_id,
                    patient_id=patient_id,
                    clinician_id="c-1",
                    practice_id="pr-1",
                    start_time=start,
                    end_time=start + timedelta(minutes=30),
                    state=S.VISIT_STATE_IN_PROGRESS,
                    create_time=now,
                    update_time=now,
                )
            )
            for before, after in (
                (S.VISIT_STATE_UNSPECIFIED, S.VISIT_STATE_BOOKED),
                (S.VISIT_STATE_BOOKED, S.VISIT_STATE_CHECKED_IN),
                (S.VISIT_STATE_CHECKED_IN, S.VISIT_STATE_IN_PROGRESS),
            ):
                session.add(
                    VisitTransitionRow(
                        visit_id=visit_id,
                        from_state=before,
                        to_state=after,
                        transition_time=now,
                        actor_id=patient_id,
                        actor_role="patient",
                    )
                )
            session.add(
                ConnectedPeriodRow(
                    visit_id=visit_id, start_time=now, end_time=now + timedelta(minutes=n + 1)
                )
            )


@contextmanager
def statements(db: Database) -> Iterator[list[str]]:
    seen: list[str] = []

    def count(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if statement.lstrip().upper().startswith("SELECT"):
            seen.append(statement)

    engine = db.read_engine.sync_engine
    event.listen(engine, "before_cursor_execute", count)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", count)


async def _page_cost(db: Database, patient_id: str, size: int) -> tuple[int, int]:
    wanted = requests.visit_query(
        session_pb2.ListVisitsRequest(patient_id=patient_id, page_size=size)
    )
    with statements(db) as seen:
        async with db.read() as session:
            page = await visits.list_visits(session, Principal("patient", patient_id), wanted)
    answer = convert.visit_page(
        page, check_in_window=timedelta(minutes=15), cipher=None
    )  # no completed visit: no codes to open
    assert all(len(v.transitions) == 3 for v in answer)
    assert all(v.connected_seconds > 0 for v in answer)
    return len(answer), len(seen)


async def test_a_page_of_visits_costs_the_same_queries_at_any_size(db: Database) -> None:
    patient_id = f"p-{uuid.uuid4().hex[:8]}"
    await _visits(db, patient_id, 12)
    one = await _page_cost(db, patient_id, 1)
    twelve = await _page_cost(db, patient_id, 12)
    assert (one[0], twelve[0]) == (1, 12)
    assert twelve[1] == one[1], f"{one[1]} queries for 1 visit, {twelve[1]} for 12"
