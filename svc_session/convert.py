"""The session service's rows as the API shows them."""

from __future__ import annotations

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from svc_session.models import ConnectedPeriodRow, VisitRow, VisitTransitionRow
from svc_session.store import closed_seconds, open_codes, periods_of
from telemesh.field_crypto import FieldCipher
from telemesh.session.v1 import session_pb2
from telemesh.timestamps import timestamp


async def to_proto(
    session: AsyncSession,
    visit: VisitRow,
    *,
    cipher: FieldCipher | None = None,
    transitions: list[VisitTransitionRow] | None = None,
    periods: list[ConnectedPeriodRow] | None = None,
) -> session_pb2.Visit:
    """The whole visit as the API shows it, with its history and connected time (read
    from the database unless the caller already holds them). Only a completed visit has
    diagnosis codes, whose opening needs `cipher`."""
    if transitions is None:
        transitions = list(
            (
                await session.exec(
                    select(VisitTransitionRow)
                    .where(VisitTransitionRow.visit_id == visit.visit_id)
                    .order_by(col(VisitTransitionRow.transition_id))
                )
            ).all()
        )
    if periods is None:
        periods = await periods_of(session, visit.visit_id)
    message = session_pb2.Visit(
        visit_id=visit.visit_id,
        patient_id=visit.patient_id,
        clinician_id=visit.clinician_id,
        start_time=timestamp(visit.start_time),
        end_time=timestamp(visit.end_time),
        state=visit.state,  # type: ignore[arg-type]
        patient_location=visit.patient_location,  # type: ignore[arg-type]
        connected_seconds=closed_seconds(periods),
        diagnosis_codes=open_codes(cipher, visit),
        audio_only=visit.audio_only,
        cancel_reason=visit.cancel_reason,  # type: ignore[arg-type]
        traceparent=visit.traceparent,
        create_time=timestamp(visit.create_time),
        new_patient=visit.new_patient,
    )
    for row in transitions:
        message.transitions.add(
            from_state=row.from_state,
            to_state=row.to_state,
            transition_time=timestamp(row.transition_time),
            actor_id=row.actor_id,
            actor_role=row.actor_role,
        )
    for period in periods:
        added = message.connected_periods.add(start_time=timestamp(period.start_time))
        if period.end_time is not None:
            added.end_time.CopyFrom(timestamp(period.end_time))
    return message
