"""Booking, cancelling, rescheduling and no-shows.

A booking claims every block of its slot in `slot_claims` in the same transaction as
the visit; the primary key makes a second claim on any block fail in the database, so
of many patients racing for one slot exactly one wins, on SQLite and PostgreSQL alike,
and overlapping slots of different lengths cannot both be booked either.

A booking is the service's hottest write, so it is written in SQLAlchemy Core with as
few round trips as its rules allow: one query for everything it checks (the clinician,
the patient, the weekly hours and the exceptions that can touch the slot), then the
claims, the visit and its first transition (one statement on PostgreSQL, whose
data-modifying CTEs do it; three on SQLite), then the idempotency record.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

from sqlalchemy import and_, bindparam, delete, exc, exists, insert
from sqlalchemy import select as core_select
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from svc_session import room_events, schedule
from svc_session.access import may_book, may_manage, require_participant
from svc_session.availability import ending_of, exception_dates, no_availability, slot_ending
from svc_session.models import (
    AvailabilityExceptionRow,
    AvailabilityRow,
    ClinicianRow,
    PatientRow,
    SlotClaimRow,
    VisitRow,
    VisitTransitionRow,
)
from svc_session.requests import Booking, Cancellation, Rescheduling
from svc_session.store import load_visit, require_transition, transition, visit_work
from telemesh import metrics
from telemesh.auth import Principal
from telemesh.errors import AlreadyExists, FailedPrecondition, NotFound
from telemesh.session.v1 import session_pb2
from telemesh.signaling.v1 import signaling_pb2
from telemesh.tracing.visit import new_visit_traceparent, trace_id_of, visit_span

S = session_pb2.VisitState


def _not_a_slot(clinician_id: str) -> FailedPrecondition:
    return FailedPrecondition(
        "NOT_A_SLOT",
        "the clinician offers no slot starting at that time",
        {"clinician_id": clinician_id},
    )


def _slot_taken(clinician_id: str) -> AlreadyExists:
    return AlreadyExists("SLOT_TAKEN", "the slot is already booked", {"clinician_id": clinician_id})


async def _slot_at(session: AsyncSession, clinician_id: str, start: datetime) -> datetime:
    """The end of the clinician's slot starting at `start`; refuses a time that is not one."""
    end = await slot_ending(session, clinician_id, start)
    if end is None:
        raise _not_a_slot(clinician_id)
    return end


async def _claim(session: AsyncSession, visit: VisitRow) -> None:
    clinician_id = visit.clinician_id  # read now: a failed flush expires `visit`
    for block in schedule.blocks(visit.start_time, visit.end_time):
        session.add(SlotClaimRow(clinician_id=clinician_id, block=block, visit_id=visit.visit_id))
    try:
        await session.flush()
    except exc.IntegrityError:
        raise _slot_taken(clinician_id) from None


async def _release(session: AsyncSession, visit_id: str) -> None:
    await session.exec(delete(SlotClaimRow).where(col(SlotClaimRow.visit_id) == visit_id))


# Booking's tables, for its Core statements.
_CLINICIANS: Any = ClinicianRow.__table__  # type: ignore[attr-defined]
_PATIENTS: Any = PatientRow.__table__  # type: ignore[attr-defined]
_AVAILABILITY: Any = AvailabilityRow.__table__  # type: ignore[attr-defined]
_EXCEPTIONS: Any = AvailabilityExceptionRow.__table__  # type: ignore[attr-defined]
_VISITS: Any = VisitRow.__table__  # type: ignore[attr-defined]
_TRANSITIONS: Any = VisitTransitionRow.__table__  # type: ignore[attr-defined]
_CLAIMS: Any = SlotClaimRow.__table__  # type: ignore[attr-defined]

# Everything a booking checks, in one query: one row per exception on the dates that
# can touch the slot (one row without exception when there is none), none when the
# clinician does not exist. Availability columns are NULL when no hours are published.
_BOOKING_FACTS = (
    core_select(
        _CLINICIANS.c.practice_id,
        exists().where(_PATIENTS.c.patient_id == bindparam("patient_id")).label("patient_exists"),
        _AVAILABILITY.c.time_zone,
        _AVAILABILITY.c.slot_minutes,
        _AVAILABILITY.c.hours_json,
        _EXCEPTIONS.c.local_date,
        _EXCEPTIONS.c.kind,
        _EXCEPTIONS.c.start_local_time,
        _EXCEPTIONS.c.end_local_time,
    )
    .select_from(
        _CLINICIANS.outerjoin(
            _AVAILABILITY, _AVAILABILITY.c.clinician_id == _CLINICIANS.c.clinician_id
        ).outerjoin(
            _EXCEPTIONS,
            and_(
                _EXCEPTIONS.c.clinician_id == _CLINICIANS.c.clinician_id,
                _EXCEPTIONS.c.local_date.between(bindparam("first_date"), bindparam("last_date")),
            ),
        )
    )
    .where(_CLINICIANS.c.clinician_id == bindparam("clinician_id"))
)


async def _checked_slot(connection: AsyncConnection, wanted: Booking) -> tuple[str, datetime]:
    """The clinician's practice and the end of the slot at `start`, once the clinician
    and the patient exist and the clinician offers that slot (in this order)."""
    first_date, last_date = exception_dates(wanted.start)
    rows = (
        await connection.execute(
            _BOOKING_FACTS,
            {
                "clinician_id": wanted.clinician_id,
                "patient_id": wanted.patient_id,
                "first_date": first_date,
                "last_date": last_date,
            },
        )
    ).all()
    if not rows:
        raise NotFound("clinician", wanted.clinician_id)
    facts = rows[0]
    if not facts.patient_exists:
        raise NotFound("patient", wanted.patient_id)
    if facts.time_zone is None:
        raise no_availability()
    exceptions = [row for row in rows if row.local_date is not None]
    end = ending_of(facts.time_zone, facts.slot_minutes, facts.hours_json, exceptions, wanted.start)
    if end is None:
        raise _not_a_slot(wanted.clinician_id)
    return facts.practice_id, end


def _written(table: Any) -> list[Any]:
    """The columns a booking writes: all but a key the database numbers."""
    return [column for column in table.columns if column.name != "transition_id"]


def _bound_insert(table: Any, prefix: str) -> Any:
    """An INSERT of one row of `table`, every column a parameter `<prefix><column>`:
    built once, compiled once."""
    return insert(table).values(
        {
            column.name: bindparam(prefix + column.name, type_=column.type)
            for column in _written(table)
        }
    )


def _claims_insert() -> Any:
    """Claims every block of a slot, `first_block` to `end_block` (excluded), in one
    statement whatever the slot's length (the blocks come from a recursive CTE)."""
    select_blocks = core_select(
        bindparam("first_block", type_=_CLAIMS.c.block.type).label("block")
    ).cte("blocks", recursive=True)
    blocks = select_blocks.union_all(
        core_select((select_blocks.c.block + 1).label("block")).where(
            select_blocks.c.block + 1 < bindparam("end_block", type_=_CLAIMS.c.block.type)
        )
    )
    return insert(_CLAIMS).from_select(
        ["clinician_id", "block", "visit_id"],
        core_select(
            bindparam("claim_clinician_id", type_=_CLAIMS.c.clinician_id.type),
            blocks.c.block,
            bindparam("claim_visit_id", type_=_CLAIMS.c.visit_id.type),
        ),
    )


_NEW_VISIT = _bound_insert(_VISITS, "visit_")
_FIRST_TRANSITION = _bound_insert(_TRANSITIONS, "transition_")
_CLAIM_BLOCKS = _claims_insert()
# PostgreSQL runs data-modifying CTEs with the statement that holds them: the visit,
# its first transition and its claims in one round trip, and a duplicate claim fails
# all three.
_BOOKING_PG = _CLAIM_BLOCKS.add_cte(
    _NEW_VISIT.cte("new_visit"), _FIRST_TRANSITION.cte("first_transition")
)


def _parameters(visit: VisitRow, booked: VisitTransitionRow) -> dict[str, Any]:
    blocks = schedule.blocks(visit.start_time, visit.end_time)
    assert len(blocks) > 0, "a slot is at least one block"
    parameters: dict[str, Any] = {
        "first_block": blocks.start,
        "end_block": blocks.stop,
        "claim_clinician_id": visit.clinician_id,
        "claim_visit_id": visit.visit_id,
    }
    for prefix, table, row in (("visit_", _VISITS, visit), ("transition_", _TRANSITIONS, booked)):
        for column in _written(table):
            parameters[prefix + column.name] = getattr(row, column.name)
    return parameters


async def _insert_booking(
    connection: AsyncConnection, visit: VisitRow, booked: VisitTransitionRow
) -> None:
    """Claims every block of the visit's slot and writes the visit and its first
    transition; a block already claimed fails the claim (SLOT_TAKEN) and nothing is
    written."""
    parameters = _parameters(visit, booked)
    try:
        if connection.dialect.name == "postgresql":
            await connection.execute(_BOOKING_PG, parameters)
            return
        await connection.execute(_CLAIM_BLOCKS, parameters)  # first: the one that can fail
    except exc.IntegrityError:
        raise _slot_taken(visit.clinician_id) from None
    await connection.execute(_NEW_VISIT, parameters)
    await connection.execute(_FIRST_TRANSITION, parameters)


class Booked(NamedTuple):
    """A new visit and its first transition (the whole of its history)."""

    visit: VisitRow
    first_transition: VisitTransitionRow


async def book(session: AsyncSession, principal: Principal, wanted: Booking) -> Booked:
    """Books the slot, once the caller passed the patient-access gate: the patient, an
    admin, or a clinician with a care relationship, who books only into their own
    schedule."""
    may_book(principal, wanted.clinician_id)
    connection = await session.connection()  # the session's transaction
    practice_id, end = await _checked_slot(connection, wanted)
    now = datetime.now(UTC)
    visit_id = str(uuid.uuid4())
    traceparent = new_visit_traceparent(visit_id)  # booking starts the visit's trace
    with visit_span(traceparent, "visit book", {"telemesh.visit_id": visit_id}):
        visit = VisitRow(
            visit_id=visit_id,
            patient_id=wanted.patient_id,
            clinician_id=wanted.clinician_id,
            practice_id=practice_id,
            start_time=wanted.start,
            end_time=end,
            state=S.VISIT_STATE_BOOKED,
            traceparent=traceparent,
            trace_id=trace_id_of(traceparent),
            create_time=now,
            update_time=now,
        )
        # Booking is the first transition of a visit's life, recorded like every other.
        booked = VisitTransitionRow(
            visit_id=visit.visit_id,
            from_state=S.VISIT_STATE_UNSPECIFIED,
            to_state=S.VISIT_STATE_BOOKED,
            transition_time=now,
            actor_id=principal.subject,
            actor_role=principal.role,
        )
        await _insert_booking(connection, visit, booked)
    metrics.count("telemesh.visits.booked", "Visits booked")
    return Booked(visit, booked)


async def cancel(session: AsyncSession, principal: Principal, wanted: Cancellation) -> VisitRow:
    visit = await load_visit(session, wanted.visit_id, for_update=True)
    with visit_work(visit, "cancel"):
        may_manage(visit, principal)
        transition(session, visit, S.VISIT_STATE_CANCELLED, principal, datetime.now(UTC))
        visit.cancel_reason = wanted.reason
        await _release(session, visit.visit_id)
        room_events.close_room(session, visit, signaling_pb2.ROOM_CLOSE_REASON_VISIT_CANCELLED)
        await session.flush()
        metrics.count("telemesh.visits.cancelled", "Visits cancelled")
        return visit


async def reschedule(session: AsyncSession, principal: Principal, wanted: Rescheduling) -> VisitRow:
    visit = await load_visit(session, wanted.visit_id, for_update=True)
    with visit_work(visit, "reschedule"):
        may_manage(visit, principal)
        if visit.state != S.VISIT_STATE_BOOKED:
            raise FailedPrecondition("NOT_RESCHEDULABLE", "only a booked visit can be rescheduled")
        end = await _slot_at(session, visit.clinician_id, wanted.start)
        # One transaction: the old claims go and the new ones come, or neither.
        await _release(session, visit.visit_id)
        visit.start_time, visit.end_time = wanted.start, end
        visit.update_time = datetime.now(UTC)
        await _claim(session, visit)
        session.add(visit)
        await session.flush()
        return visit


async def mark_no_show(
    session: AsyncSession,
    principal: Principal,
    visit_id: str,
    grace: timedelta,
    *,
    by_sweeper: bool = False,
) -> VisitRow:
    """Marks a no-show for the visit's clinician or an admin; `by_sweeper` when the
    service's own background sweep does it (as `principal`)."""
    visit = await load_visit(session, visit_id, for_update=True)
    with visit_work(visit, "no-show"):
        if not by_sweeper and principal.role != "admin":
            require_participant(visit, principal, "clinician")
        require_transition(visit, S.VISIT_STATE_NO_SHOW)
        now = datetime.now(UTC)
        if now < visit.start_time + grace:
            raise FailedPrecondition(
                "GRACE_PERIOD", "a visit becomes a no-show only after its grace period"
            )
        transition(session, visit, S.VISIT_STATE_NO_SHOW, principal, now)
        await _release(session, visit.visit_id)
        room_events.close_room(session, visit, signaling_pb2.ROOM_CLOSE_REASON_NO_SHOW)
        await session.flush()
        metrics.count("telemesh.visits.no_show", "Visits marked no-show")
        return visit


async def overdue_visits(session: AsyncSession, grace: timedelta, limit: int = 100) -> list[str]:
    """Booked visits nobody checked in to, past their grace period."""
    cutoff = datetime.now(UTC) - grace
    rows = await session.exec(
        select(VisitRow.visit_id)
        .where(VisitRow.state == S.VISIT_STATE_BOOKED)
        .where(col(VisitRow.start_time) < cutoff)
        .limit(limit)
    )
    return list(rows.all())
