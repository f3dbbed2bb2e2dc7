"""Booking, cancelling, rescheduling and no-shows.

A booking claims every block of its slot in `slot_claims` in the same transaction as
the visit; the primary key makes a second claim on any block fail in the database, so
of many patients racing for one slot exactly one wins, on SQLite and PostgreSQL alike,
and overlapping slots of different lengths cannot both be booked either.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy import delete, exc
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from svc_session import room_events, schedule
from svc_session.access import require_participant
from svc_session.availability import slot_ending
from svc_session.convert import to_proto
from svc_session.models import (
    BLOCK_MINUTES,
    ClinicianRow,
    PatientRow,
    SlotClaimRow,
    VisitRow,
    VisitTransitionRow,
)
from svc_session.store import load_visit, require_transition, transition, visit_work
from telemesh import metrics
from telemesh.auth import Principal, current_principal
from telemesh.errors import AlreadyExists, FailedPrecondition, NotFound, PermissionDenied
from telemesh.session.v1 import session_pb2
from telemesh.signaling.v1 import signaling_pb2
from telemesh.tracing.visit import new_visit_traceparent, trace_id_of, visit_span
from telemesh.validation import Violations

S = session_pb2.VisitState


def _check_start(check: Violations, field: str, value: object, present: bool) -> datetime | None:
    start = check.timestamp(field, value, present)  # type: ignore[arg-type]
    if start is None:
        return None
    if not schedule.is_on_grain(start):
        check.add(field, f"must be on a {BLOCK_MINUTES}-minute boundary")
        return None
    if start <= datetime.now(UTC):
        check.add(field, "must be in the future")
        return None
    return start


async def _slot_at(session: AsyncSession, clinician_id: str, start: datetime) -> datetime:
    """The end of the clinician's slot starting at `start`; refuses a time that is not one."""
    end = await slot_ending(session, clinician_id, start)
    if end is None:
        raise FailedPrecondition(
            "NOT_A_SLOT",
            "the clinician offers no slot starting at that time",
            {"clinician_id": clinician_id},
        )
    return end


async def _claim(session: AsyncSession, visit: VisitRow) -> None:
    clinician_id = visit.clinician_id  # read now: a failed flush expires `visit`
    for block in schedule.blocks(visit.start_time, visit.end_time):
        session.add(SlotClaimRow(clinician_id=clinician_id, block=block, visit_id=visit.visit_id))
    try:
        await session.flush()
    except exc.IntegrityError:
        raise AlreadyExists(
            "SLOT_TAKEN", "the slot is already booked", {"clinician_id": clinician_id}
        ) from None


async def _release(session: AsyncSession, visit_id: str) -> None:
    await session.exec(delete(SlotClaimRow).where(col(SlotClaimRow.visit_id) == visit_id))


def checked_start(request: session_pb2.BookVisitRequest) -> datetime:
    """The booking's start, once every field of the request checks out."""
    check = Violations()
    check.uuid("request_id", request.request_id)
    check.identifier("clinician_id", request.clinician_id)
    check.identifier("patient_id", request.patient_id)
    start = _check_start(check, "start_time", request.start_time, request.HasField("start_time"))
    check.raise_if_any()
    assert start is not None
    return start


async def book(
    session: AsyncSession, request: session_pb2.BookVisitRequest, start: datetime
) -> session_pb2.BookVisitResponse:
    """Books the slot at `start` (from `checked_start`), once the caller passed the
    patient-access gate: the patient, an admin, or a clinician with a care relationship,
    who books only into their own schedule."""
    principal = current_principal()
    if principal.role == "clinician" and principal.subject != request.clinician_id:
        raise PermissionDenied(
            "NOT_YOUR_SCHEDULE", "a clinician books only into their own schedule"
        )
    clinician = await session.get(ClinicianRow, request.clinician_id)
    if clinician is None:
        raise NotFound("clinician", request.clinician_id)
    if await session.get(PatientRow, request.patient_id) is None:
        raise NotFound("patient", request.patient_id)
    end = await _slot_at(session, request.clinician_id, start)
    now = datetime.now(UTC)
    visit_id = str(uuid.uuid4())
    traceparent = new_visit_traceparent(visit_id)  # booking starts the visit's trace
    with visit_span(traceparent, "visit book", {"telemesh.visit_id": visit_id}):
        visit = VisitRow(
            visit_id=visit_id,
            patient_id=request.patient_id,
            clinician_id=request.clinician_id,
            practice_id=clinician.practice_id,
            start_time=start,
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
        session.add(visit)
        session.add(booked)
        await _claim(session, visit)  # flushes all three; a taken block fails here
    metrics.count("telemesh.visits.booked", "Visits booked")
    return session_pb2.BookVisitResponse(
        visit=await to_proto(session, visit, transitions=[booked], periods=[])
    )


def _may_manage(visit: VisitRow, principal: Principal) -> None:
    if principal.role != "admin":
        require_participant(visit, principal)


async def cancel(
    session: AsyncSession, request: session_pb2.CancelVisitRequest
) -> session_pb2.CancelVisitResponse:
    principal = current_principal()
    check = Violations()
    check.required("visit_id", request.visit_id)
    check.check(
        request.reason != session_pb2.CancelReason.CANCEL_REASON_UNSPECIFIED
        and request.reason in session_pb2.CancelReason.values(),
        "reason",
        "a cancellation needs a reason",
    )
    check.raise_if_any()
    visit = await load_visit(session, request.visit_id, for_update=True)
    with visit_work(visit, "cancel"):
        _may_manage(visit, principal)
        transition(session, visit, S.VISIT_STATE_CANCELLED, principal, datetime.now(UTC))
        visit.cancel_reason = request.reason
        await _release(session, visit.visit_id)
        room_events.close_room(session, visit, signaling_pb2.ROOM_CLOSE_REASON_VISIT_CANCELLED)
        await session.flush()
        metrics.count("telemesh.visits.cancelled", "Visits cancelled")
        return session_pb2.CancelVisitResponse(visit=await to_proto(session, visit))


async def reschedule(
    session: AsyncSession, request: session_pb2.RescheduleVisitRequest
) -> session_pb2.RescheduleVisitResponse:
    principal = current_principal()
    check = Violations()
    check.required("visit_id", request.visit_id)
    start = _check_start(
        check, "new_start_time", request.new_start_time, request.HasField("new_start_time")
    )
    check.raise_if_any()
    assert start is not None
    visit = await load_visit(session, request.visit_id, for_update=True)
    with visit_work(visit, "reschedule"):
        _may_manage(visit, principal)
        if visit.state != S.VISIT_STATE_BOOKED:
            raise FailedPrecondition("NOT_RESCHEDULABLE", "only a booked visit can be rescheduled")
        end = await _slot_at(session, visit.clinician_id, start)
        # One transaction: the old claims go and the new ones come, or neither.
        await _release(session, visit.visit_id)
        visit.start_time, visit.end_time = start, end
        visit.update_time = datetime.now(UTC)
        await _claim(session, visit)
        session.add(visit)
        await session.flush()
        return session_pb2.RescheduleVisitResponse(visit=await to_proto(session, visit))


async def mark_no_show(
    session: AsyncSession,
    request: session_pb2.MarkNoShowRequest,
    grace: timedelta,
    sweeper: Principal | None = None,
) -> session_pb2.MarkNoShowResponse:
    """Marks a no-show for the visit's clinician or an admin; `sweeper` is the service's
    own principal when its background sweep does it."""
    principal = sweeper or current_principal()
    check = Violations()
    check.required("visit_id", request.visit_id)
    check.raise_if_any()
    visit = await load_visit(session, request.visit_id, for_update=True)
    with visit_work(visit, "no-show"):
        if sweeper is None and principal.role != "admin":
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
        return session_pb2.MarkNoShowResponse(visit=await to_proto(session, visit))


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
