"""A visit's life after booking: reading, check-in, admission, connection, completion."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import NamedTuple
from zoneinfo import ZoneInfo

from sqlalchemy import or_
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from svc_session import room_events
from svc_session.access import listing_scope, may_read, require_participant
from svc_session.models import ClinicianRow, ConnectedPeriodRow, VisitRow, VisitTransitionRow
from svc_session.requests import CheckIn, Completion, ConnectionEvent, VisitQuery
from svc_session.store import (
    closed_seconds,
    histories_of,
    load_visit,
    periods_of,
    seal_codes,
    transition,
    visit_work,
)
from telemesh import metrics
from telemesh.auth import Principal
from telemesh.billing.v1 import billing_pb2
from telemesh.errors import FailedPrecondition
from telemesh.field_crypto import FieldCipher
from telemesh.outbox import enqueue
from telemesh.paging import decode_token, page_of
from telemesh.session.v1 import session_pb2
from telemesh.signaling.v1 import signaling_pb2
from telemesh.timestamps import timestamp
from telemesh.tracing.visit import record_visit_root

S = session_pb2.VisitState
NEW_PATIENT_LOOKBACK = timedelta(days=3 * 365)
RECORD_COMPLETION = "/telemesh.billing.v1.BillingService/RecordVisitCompletion"


async def get(session: AsyncSession, principal: Principal, visit_id: str) -> VisitRow:
    visit = await load_visit(session, visit_id)
    may_read(visit, principal)
    return visit


class VisitPage(NamedTuple):
    """A page of visits with their histories (read in constant queries)."""

    visits: Sequence[VisitRow]
    transitions: dict[str, list[VisitTransitionRow]]
    periods: dict[str, list[ConnectedPeriodRow]]
    next_page_token: str


async def list_visits(session: AsyncSession, principal: Principal, wanted: VisitQuery) -> VisitPage:
    """A page of the visits the caller may list, newest first."""
    patient_id, clinician_id = listing_scope(principal, wanted.patient_id, wanted.clinician_id)
    query_key = {"p": patient_id, "c": clinician_id, "s": list(wanted.states)}
    cursor = decode_token(wanted.page_token, query_key, {"t": str, "v": str})
    query = select(VisitRow)
    if patient_id:
        query = query.where(VisitRow.patient_id == patient_id)
    if clinician_id:
        query = query.where(VisitRow.clinician_id == clinician_id)
    if wanted.states:
        query = query.where(col(VisitRow.state).in_(list(wanted.states)))
    if cursor is not None:
        after = datetime.fromisoformat(cursor["t"])
        query = query.where(
            or_(
                col(VisitRow.start_time) < after,
                (col(VisitRow.start_time) == after) & (col(VisitRow.visit_id) < cursor["v"]),
            )
        )
    query = query.order_by(col(VisitRow.start_time).desc(), col(VisitRow.visit_id).desc()).limit(
        wanted.page_size + 1
    )
    rows, token = page_of(
        (await session.exec(query)).all(),
        wanted.page_size,
        lambda row: {"t": row.start_time.isoformat(), "v": row.visit_id},
        query_key,
    )
    transitions, periods = await histories_of(session, [row.visit_id for row in rows])
    return VisitPage(rows, transitions, periods, token)


async def check_in(
    session: AsyncSession, principal: Principal, wanted: CheckIn, window_before: timedelta
) -> VisitRow:
    visit = await load_visit(session, wanted.visit_id, for_update=True)
    with visit_work(visit, "check-in"):
        require_participant(visit, principal, "patient")
        now = datetime.now(UTC)
        if visit.state == S.VISIT_STATE_BOOKED and not (
            visit.start_time - window_before <= now <= visit.end_time
        ):
            raise FailedPrecondition(
                "OUTSIDE_CHECK_IN_WINDOW",
                f"check-in opens {int(window_before.total_seconds() // 60)} minutes before",
            )
        transition(session, visit, S.VISIT_STATE_CHECKED_IN, principal, now)
        visit.patient_location = wanted.patient_location
        await session.flush()
        metrics.count("telemesh.visits.checked_in", "Visits whose patient checked in")
        return visit


async def admit(session: AsyncSession, principal: Principal, visit_id: str) -> VisitRow:
    visit = await load_visit(session, visit_id, for_update=True)
    with visit_work(visit, "admit"):
        require_participant(visit, principal, "clinician")
        transition(session, visit, S.VISIT_STATE_IN_PROGRESS, principal, datetime.now(UTC))
        await session.flush()
        metrics.count("telemesh.visits.joined", "Visits whose patient was admitted")
        return visit


async def record_connection(session: AsyncSession, event: ConnectionEvent) -> int:
    """Opens or closes the visit's connected period (signaling reports the peers'
    connection); the visit's connected seconds so far."""
    visit = await load_visit(session, event.visit_id, for_update=True)
    with visit_work(visit, "connection event"):
        periods = await periods_of(session, visit.visit_id)
        if visit.state == S.VISIT_STATE_COMPLETED and not event.connected:
            # The peers hang up after the visit was completed: completion already closed
            # the call, so the news is acknowledged and changes nothing (not an error).
            return closed_seconds(periods)
        if visit.state != S.VISIT_STATE_IN_PROGRESS:
            raise FailedPrecondition("NOT_IN_PROGRESS", "only a visit in progress is connected")
        open_period = next((p for p in periods if p.end_time is None), None)
        if event.connected and open_period is None:
            # Connected time counts from admission on, whatever a peer's clock says.
            admitted_at = await _admitted_at(session, visit)
            start = max(event.at, admitted_at) if admitted_at is not None else event.at
            session.add(ConnectedPeriodRow(visit_id=visit.visit_id, start_time=start))
        elif not event.connected and open_period is not None:
            open_period.end_time = max(event.at, open_period.start_time)
            session.add(open_period)
        await session.flush()
        return closed_seconds(await periods_of(session, visit.visit_id))


async def _admitted_at(session: AsyncSession, visit: VisitRow) -> datetime | None:
    """When the clinician admitted the patient: the service was rendered from then."""
    admitted = await session.exec(
        select(VisitTransitionRow.transition_time)
        .where(VisitTransitionRow.visit_id == visit.visit_id)
        .where(VisitTransitionRow.to_state == S.VISIT_STATE_IN_PROGRESS)
    )
    return admitted.first()


async def _is_new_patient(session: AsyncSession, visit: VisitRow) -> bool:
    """New to the practice: no completed visit with it in the three years before."""
    earlier = await session.exec(
        select(VisitRow.visit_id)
        .where(VisitRow.patient_id == visit.patient_id)
        .where(VisitRow.practice_id == visit.practice_id)
        .where(VisitRow.state == S.VISIT_STATE_COMPLETED)
        .where(VisitRow.visit_id != visit.visit_id)
        .where(col(VisitRow.start_time) >= visit.start_time - NEW_PATIENT_LOOKBACK)
        .where(col(VisitRow.start_time) < visit.start_time)
        .limit(1)
    )
    return earlier.first() is None


async def complete(
    session: AsyncSession, cipher: FieldCipher, principal: Principal, wanted: Completion
) -> VisitRow:
    """Completes the visit and, in the same transaction, the event that bills it. The
    codes are PHI: sealed in the visit and in the event's payload."""
    codes = list(wanted.diagnosis_codes)
    visit = await load_visit(session, wanted.visit_id, for_update=True)
    with visit_work(visit, "complete"):
        require_participant(visit, principal, "clinician")
        now = datetime.now(UTC)
        transition(session, visit, S.VISIT_STATE_COMPLETED, principal, now)
        periods = await periods_of(session, visit.visit_id)
        for period in periods:
            if period.end_time is None:
                # A peer's clock may run a little ahead (signaling allows 5 s): a period
                # never ends before it starts.
                period.end_time = max(now, period.start_time)
                session.add(period)
        seal_codes(cipher, visit, codes)
        visit.audio_only = wanted.audio_only
        visit.new_patient = await _is_new_patient(session, visit)
        clinician = await session.get(ClinicianRow, visit.clinician_id)
        assert clinician is not None
        event = billing_pb2.RecordVisitCompletionRequest(
            visit_id=visit.visit_id,
            patient_id=visit.patient_id,
            clinician_id=visit.clinician_id,
            practice_id=visit.practice_id,
            complete_time=timestamp(now),
            service_date=(await _admitted_at(session, visit) or now)
            .astimezone(ZoneInfo(clinician.time_zone))
            .date()
            .isoformat(),
            connected_seconds=closed_seconds(periods),
            new_patient=visit.new_patient,
            patient_location=visit.patient_location,  # type: ignore[arg-type]
            audio_only=visit.audio_only,
            diagnosis_codes=codes,
        )
        room_events.close_room(session, visit, signaling_pb2.ROOM_CLOSE_REASON_VISIT_ENDED)
        enqueue(
            session,
            target="billing",
            method=RECORD_COMPLETION,
            key=visit.visit_id,
            payload=event.SerializeToString(),
            traceparent=visit.traceparent,
            cipher=cipher,
        )
        session.add(visit)
        await session.flush()
        metrics.count("telemesh.visits.completed", "Visits completed")
        return visit


def record_root_span(visit: session_pb2.Visit) -> None:
    """The visit's root span, booking to completion (a repeat records the same span)."""
    record_visit_root(
        visit.traceparent,
        visit.create_time.ToDatetime(tzinfo=UTC),
        visit.transitions[-1].transition_time.ToDatetime(tzinfo=UTC),
        {
            "telemesh.visit_id": visit.visit_id,
            "telemesh.visit.connected_seconds": visit.connected_seconds,
            "telemesh.visit.new_patient": visit.new_patient,
        },
    )
