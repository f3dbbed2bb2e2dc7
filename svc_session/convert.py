"""The session service's rows as the API shows them."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from svc_session import schedule
from svc_session.availability import weekly_periods
from svc_session.join_tokens import IssuedToken
from svc_session.models import (
    AccessLogEntryRow,
    AvailabilityExceptionRow,
    AvailabilityRow,
    ClinicianRow,
    ConnectedPeriodRow,
    PatientRow,
    VisitRow,
    VisitTransitionRow,
)
from svc_session.profiles import open_person
from svc_session.store import closed_seconds, open_codes, periods_of
from svc_session.visits import VisitPage
from telemesh.field_crypto import FieldCipher
from telemesh.session.v1 import session_pb2
from telemesh.timestamps import timestamp

P = session_pb2


def patient(cipher: FieldCipher, row: PatientRow) -> P.Patient:
    return P.Patient(
        patient_id=row.patient_id,
        create_time=timestamp(row.create_time),
        **open_person(cipher, "patients", row.patient_id, row),
    )


def clinician(cipher: FieldCipher, row: ClinicianRow, *, with_phi: bool) -> P.Clinician:
    phi = open_person(cipher, "clinicians", row.clinician_id, row) if with_phi else {}
    return P.Clinician(
        clinician_id=row.clinician_id,
        time_zone=row.time_zone,
        practice_id=row.practice_id,
        create_time=timestamp(row.create_time),
        public_name=row.public_name,
        **phi,
    )


def availability(row: AvailabilityRow) -> P.Availability:
    return P.Availability(
        clinician_id=row.clinician_id,
        time_zone=row.time_zone,
        slot_minutes=row.slot_minutes,
        update_time=timestamp(row.update_time),
        hours=[
            P.WeeklyHours(
                day=period.day,  # type: ignore[arg-type]
                start_local_time=schedule.format_local_time(period.start),
                end_local_time=schedule.format_local_time(period.end),
            )
            for period in weekly_periods(row.hours_json)
        ],
    )


def availability_exception(row: AvailabilityExceptionRow) -> P.AvailabilityException:
    return P.AvailabilityException(
        exception_id=row.exception_id,
        clinician_id=row.clinician_id,
        local_date=row.local_date,
        kind=row.kind,  # type: ignore[arg-type]
        start_local_time=row.start_local_time,
        end_local_time=row.end_local_time,
    )


def slots(clinician_id: str, free: Sequence[tuple[datetime, datetime]]) -> list[P.Slot]:
    return [
        P.Slot(clinician_id=clinician_id, start_time=timestamp(start), end_time=timestamp(end))
        for start, end in free
    ]


def join_token(issued: IssuedToken) -> P.IssueJoinTokenResponse:
    return P.IssueJoinTokenResponse(
        join_token=issued.token,
        expire_time=timestamp(issued.expire_time),
        role=JOIN_ROLES[issued.role],
    )


JOIN_ROLES = {
    "patient": P.ParticipantRole.PARTICIPANT_ROLE_PATIENT,
    "clinician": P.ParticipantRole.PARTICIPANT_ROLE_CLINICIAN,
}


def access_entry(row: AccessLogEntryRow) -> P.AccessLogEntry:
    return P.AccessLogEntry(
        sequence=row.sequence,
        access=P.PatientAccess(
            access_id=row.access_id,
            access_time=timestamp(datetime.fromisoformat(row.access_time)),
            patient_id=row.patient_id,
            actor_id=row.actor_id,
            actor_role=row.actor_role,
            service=row.service,
            method=row.method,
            outcome=P.AccessOutcome.ValueType(row.outcome),
            basis=row.basis,
        ),
        previous_hash=row.previous_hash,
        entry_hash=row.entry_hash,
        entry_time=timestamp(row.entry_time),
    )


async def visit(
    session: AsyncSession,
    row: VisitRow,
    *,
    check_in_window: timedelta,
    cipher: FieldCipher | None = None,
    transitions: list[VisitTransitionRow] | None = None,
    periods: list[ConnectedPeriodRow] | None = None,
) -> P.Visit:
    """The whole visit as the API shows it, its history and connected periods read from
    the database unless the caller already holds them."""
    if transitions is None:
        transitions = list(
            (
                await session.exec(
                    select(VisitTransitionRow)
                    .where(VisitTransitionRow.visit_id == row.visit_id)
                    .order_by(col(VisitTransitionRow.transition_id))
                )
            ).all()
        )
    if periods is None:
        periods = await periods_of(session, row.visit_id)
    return visit_of(
        row,
        check_in_window=check_in_window,
        cipher=cipher,
        transitions=transitions,
        periods=periods,
    )


def visit_of(
    row: VisitRow,
    *,
    check_in_window: timedelta,
    cipher: FieldCipher | None,
    transitions: Sequence[VisitTransitionRow],
    periods: Sequence[ConnectedPeriodRow],
) -> P.Visit:
    """The visit with the history given; check-in opens `check_in_window` before its
    start. Only a completed visit has diagnosis codes, whose opening needs `cipher`."""
    message = P.Visit(
        visit_id=row.visit_id,
        patient_id=row.patient_id,
        clinician_id=row.clinician_id,
        start_time=timestamp(row.start_time),
        end_time=timestamp(row.end_time),
        state=row.state,  # type: ignore[arg-type]
        patient_location=row.patient_location,  # type: ignore[arg-type]
        connected_seconds=closed_seconds(periods),
        diagnosis_codes=open_codes(cipher, row),
        audio_only=row.audio_only,
        cancel_reason=row.cancel_reason,  # type: ignore[arg-type]
        traceparent=row.traceparent,
        create_time=timestamp(row.create_time),
        new_patient=row.new_patient,
        check_in_open_time=timestamp(row.start_time - check_in_window),
        check_in_close_time=timestamp(row.end_time),
    )
    for change in transitions:
        message.transitions.add(
            from_state=change.from_state,
            to_state=change.to_state,
            transition_time=timestamp(change.transition_time),
            actor_id=change.actor_id,
            actor_role=change.actor_role,
        )
    for period in periods:
        added = message.connected_periods.add(start_time=timestamp(period.start_time))
        if period.end_time is not None:
            added.end_time.CopyFrom(timestamp(period.end_time))
    return message


def visit_page(
    page: VisitPage, *, check_in_window: timedelta, cipher: FieldCipher | None
) -> list[P.Visit]:
    """A page of visits, their histories already read (no query per visit)."""
    return [
        visit_of(
            row,
            check_in_window=check_in_window,
            cipher=cipher,
            transitions=page.transitions[row.visit_id],
            periods=page.periods[row.visit_id],
        )
        for row in page.visits
    ]
