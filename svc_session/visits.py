"""A visit's life after booking: reading, check-in, admission, connection, completion."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import or_
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from svc_session import room_events
from svc_session.access import NotParticipant, require_participant, role_in
from svc_session.convert import to_proto
from svc_session.models import ClinicianRow, ConnectedPeriodRow, VisitRow, VisitTransitionRow
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
from telemesh.auth import current_principal, require_service
from telemesh.billing.v1 import billing_pb2
from telemesh.errors import FailedPrecondition, PermissionDenied
from telemesh.field_crypto import FieldCipher
from telemesh.outbox import enqueue
from telemesh.paging import decode_token, page_of, page_size
from telemesh.session.v1 import session_pb2
from telemesh.signaling.v1 import signaling_pb2
from telemesh.timestamps import timestamp
from telemesh.tracing.visit import record_visit_root
from telemesh.validation import Violations

S = session_pb2.VisitState
NEW_PATIENT_LOOKBACK = timedelta(days=3 * 365)
RECORD_COMPLETION = "/telemesh.billing.v1.BillingService/RecordVisitCompletion"
# Services that read visits: signaling checks a room's visit.
READER_SERVICES = frozenset({"signaling"})


async def get(
    session: AsyncSession, cipher: FieldCipher, request: session_pb2.GetVisitRequest
) -> session_pb2.GetVisitResponse:
    principal = current_principal()
    check = Violations()
    check.required("visit_id", request.visit_id)
    check.raise_if_any()
    visit = await load_visit(session, request.visit_id)
    if not (
        role_in(visit, principal)
        or principal.role == "admin"
        or (principal.is_service and principal.subject in READER_SERVICES)
    ):
        raise NotParticipant(visit, "only the visit's participants may read it")
    return session_pb2.GetVisitResponse(visit=await to_proto(session, visit, cipher=cipher))


async def list_visits(
    session: AsyncSession, cipher: FieldCipher, request: session_pb2.ListVisitsRequest
) -> session_pb2.ListVisitsResponse:
    principal = current_principal()
    patient_id, clinician_id = request.patient_id, request.clinician_id
    if principal.role == "patient":
        patient_id = patient_id or principal.subject
        if patient_id != principal.subject:
            raise PermissionDenied("NOT_YOURS", "a patient lists only their own visits")
    elif principal.role == "clinician":
        clinician_id = clinician_id or principal.subject
        if clinician_id != principal.subject:
            raise PermissionDenied("NOT_YOURS", "a clinician lists only their own visits")
    elif principal.role != "admin":
        raise PermissionDenied(
            "ROLE_NOT_ALLOWED", "only patients, clinicians and admins list visits"
        )
    check = Violations()
    check.check(
        all(s in S.values() and s != S.VISIT_STATE_UNSPECIFIED for s in request.states),
        "states",
        "unknown visit state",
    )
    size = page_size(request.page_size)
    check.raise_if_any()
    query_key = {"p": patient_id, "c": clinician_id, "s": sorted(request.states)}
    cursor = decode_token(request.page_token, query_key, {"t": str, "v": str})
    query = select(VisitRow)
    if patient_id:
        query = query.where(VisitRow.patient_id == patient_id)
    if clinician_id:
        query = query.where(VisitRow.clinician_id == clinician_id)
    if request.states:
        query = query.where(col(VisitRow.state).in_(list(request.states)))
    if cursor is not None:
        after = datetime.fromisoformat(cursor["t"])
        query = query.where(
            or_(
                col(VisitRow.start_time) < after,
                (col(VisitRow.start_time) == after) & (col(VisitRow.visit_id) < cursor["v"]),
            )
        )
    query = query.order_by(col(VisitRow.start_time).desc(), col(VisitRow.visit_id).desc()).limit(
        size + 1
    )
    rows, token = page_of(
        (await session.exec(query)).all(),
        size,
        lambda row: {"t": row.start_time.isoformat(), "v": row.visit_id},
        query_key,
    )
    transitions, periods = await histories_of(session, [row.visit_id for row in rows])
    return session_pb2.ListVisitsResponse(
        visits=[
            await to_proto(
                session,
                row,
                cipher=cipher,
                transitions=transitions[row.visit_id],
                periods=periods[row.visit_id],
            )
            for row in rows
        ],
        next_page_token=token,
    )


async def check_in(
    session: AsyncSession, request: session_pb2.CheckInRequest, window_before: timedelta
) -> session_pb2.CheckInResponse:
    principal = current_principal()
    check = Violations()
    check.required("visit_id", request.visit_id)
    check.check(
        request.patient_location
        in (
            session_pb2.PatientLocation.PATIENT_LOCATION_HOME,
            session_pb2.PatientLocation.PATIENT_LOCATION_OTHER,
        ),
        "patient_location",
        "say where you are: HOME or OTHER",
    )
    check.raise_if_any()
    visit = await load_visit(session, request.visit_id, for_update=True)
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
        visit.patient_location = request.patient_location
        await session.flush()
        return session_pb2.CheckInResponse(visit=await to_proto(session, visit))


async def admit(
    session: AsyncSession, request: session_pb2.AdmitPatientRequest
) -> session_pb2.AdmitPatientResponse:
    principal = current_principal()
    check = Violations()
    check.required("visit_id", request.visit_id)
    check.raise_if_any()
    visit = await load_visit(session, request.visit_id, for_update=True)
    with visit_work(visit, "admit"):
        require_participant(visit, principal, "clinician")
        transition(session, visit, S.VISIT_STATE_IN_PROGRESS, principal, datetime.now(UTC))
        await session.flush()
        metrics.count("telemesh.visits.joined", "Visits whose patient was admitted")
        return session_pb2.AdmitPatientResponse(visit=await to_proto(session, visit))


async def record_connection(
    session: AsyncSession, request: session_pb2.RecordConnectionEventRequest
) -> session_pb2.RecordConnectionEventResponse:
    require_service("signaling")
    K = session_pb2.ConnectionEventKind
    check = Violations()
    check.required("visit_id", request.visit_id)
    check.check(
        request.kind in (K.CONNECTION_EVENT_KIND_CONNECTED, K.CONNECTION_EVENT_KIND_DISCONNECTED),
        "kind",
        "must be CONNECTED or DISCONNECTED",
    )
    at = check.timestamp("event_time", request.event_time, request.HasField("event_time"))
    if at is not None and at > datetime.now(UTC) + timedelta(seconds=5):
        check.add("event_time", "is in the future")
    check.raise_if_any()
    assert at is not None
    visit = await load_visit(session, request.visit_id, for_update=True)
    with visit_work(visit, "connection event"):
        periods = await periods_of(session, visit.visit_id)
        if (
            visit.state == S.VISIT_STATE_COMPLETED
            and request.kind == K.CONNECTION_EVENT_KIND_DISCONNECTED
        ):
            # The peers hang up after the visit was completed: completion already closed
            # the call, so the news is acknowledged and changes nothing (not an error).
            return session_pb2.RecordConnectionEventResponse(
                connected_seconds=closed_seconds(periods)
            )
        if visit.state != S.VISIT_STATE_IN_PROGRESS:
            raise FailedPrecondition("NOT_IN_PROGRESS", "only a visit in progress is connected")
        open_period = next((p for p in periods if p.end_time is None), None)
        if request.kind == K.CONNECTION_EVENT_KIND_CONNECTED and open_period is None:
            # Connected time counts from admission on, whatever a peer's clock says.
            admitted_at = await _admitted_at(session, visit)
            start = max(at, admitted_at) if admitted_at is not None else at
            session.add(ConnectedPeriodRow(visit_id=visit.visit_id, start_time=start))
        elif request.kind == K.CONNECTION_EVENT_KIND_DISCONNECTED and open_period is not None:
            open_period.end_time = max(at, open_period.start_time)
            session.add(open_period)
        await session.flush()
        return session_pb2.RecordConnectionEventResponse(
            connected_seconds=closed_seconds(await periods_of(session, visit.visit_id))
        )


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
    session: AsyncSession, cipher: FieldCipher, request: session_pb2.CompleteVisitRequest
) -> session_pb2.CompleteVisitResponse:
    """Completes the visit and, in the same transaction, the event that bills it. The
    codes are PHI: sealed in the visit and in the event's payload."""
    principal = current_principal()
    check = Violations()
    check.required("visit_id", request.visit_id)
    codes = [code.strip().upper() for code in request.diagnosis_codes]
    check.check(1 <= len(codes) <= 12, "diagnosis_codes", "give 1 to 12 ICD-10-CM codes")
    for index, code in enumerate(codes):
        check.icd10_cm(f"diagnosis_codes[{index}]", code)
    check.check(len(set(codes)) == len(codes), "diagnosis_codes", "has a code twice")
    check.raise_if_any()
    visit = await load_visit(session, request.visit_id, for_update=True)
    with visit_work(visit, "complete"):
        require_participant(visit, principal, "clinician")
        now = datetime.now(UTC)
        transition(session, visit, S.VISIT_STATE_COMPLETED, principal, now)
        periods = await periods_of(session, visit.visit_id)
        for period in periods:
            if period.end_time is None:
                period.end_time = now
                session.add(period)
        seal_codes(cipher, visit, codes)
        visit.audio_only = request.audio_only
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
        return session_pb2.CompleteVisitResponse(
            visit=await to_proto(session, visit, cipher=cipher)
        )


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
