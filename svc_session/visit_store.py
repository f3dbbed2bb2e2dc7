"""Reading and changing visits: loading, access rules, transitions, and the proto view."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from svc_session.models import ConnectedPeriodRow, VisitRow, VisitTransitionRow
from telemesh.auth import Principal
from telemesh.errors import FailedPrecondition, NotFound, PermissionDenied
from telemesh.field_crypto import FieldCipher
from telemesh.session.v1 import session_pb2
from telemesh.timestamps import timestamp
from telemesh.tracing.visit import visit_span

S = session_pb2.VisitState

# The visit's life: every transition not listed here is refused.
ALLOWED_TRANSITIONS: dict[int, frozenset[int]] = {
    S.VISIT_STATE_BOOKED: frozenset(
        {S.VISIT_STATE_CHECKED_IN, S.VISIT_STATE_CANCELLED, S.VISIT_STATE_NO_SHOW}
    ),
    S.VISIT_STATE_CHECKED_IN: frozenset(
        {S.VISIT_STATE_IN_PROGRESS, S.VISIT_STATE_CANCELLED, S.VISIT_STATE_NO_SHOW}
    ),
    S.VISIT_STATE_IN_PROGRESS: frozenset({S.VISIT_STATE_COMPLETED}),
}


@contextmanager
def visit_work(visit: VisitRow, action: str) -> Iterator[None]:
    """Runs a piece of work about `visit` in a span of the visit's own trace."""
    with visit_span(
        visit.traceparent,
        f"visit {action}",
        {"telemesh.visit_id": visit.visit_id, "telemesh.visit.state": state_name(visit.state)},
    ):
        yield


def state_name(state: int) -> str:
    return S.Name(S.ValueType(state)).removeprefix("VISIT_STATE_").lower()


async def load_visit(session: AsyncSession, visit_id: str, *, for_update: bool = False) -> VisitRow:
    query = select(VisitRow).where(VisitRow.visit_id == visit_id)
    if for_update:
        query = query.with_for_update()
    visit = (await session.exec(query)).first()
    if visit is None:
        raise NotFound("visit", visit_id)
    return visit


def role_in(visit: VisitRow, principal: Principal) -> str | None:
    """ "patient" or "clinician" when the caller takes part in the visit."""
    if principal.is_user("patient", visit.patient_id):
        return "patient"
    if principal.is_user("clinician", visit.clinician_id):
        return "clinician"
    return None


class NotParticipant(PermissionDenied):
    """A refusal about one visit; names the visit's patient for the access log."""

    def __init__(self, visit: VisitRow, message: str) -> None:
        super().__init__("NOT_PARTICIPANT", message)
        self.patient_id = visit.patient_id


def require_participant(visit: VisitRow, principal: Principal, *roles: str) -> str:
    """The caller's role in the visit; they must hold one of `roles` (any when empty)."""
    role = role_in(visit, principal)
    if role is None or (roles and role not in roles):
        wanted = " or ".join(roles) if roles else "participant"
        raise NotParticipant(visit, f"only the visit's {wanted} may do this")
    return role


def require_transition(visit: VisitRow, to_state: int) -> None:
    """Refuses a move the visit's life does not allow (FAILED_PRECONDITION)."""
    if to_state not in ALLOWED_TRANSITIONS.get(visit.state, frozenset()):
        raise FailedPrecondition(
            "ILLEGAL_TRANSITION",
            f"a {state_name(visit.state)} visit cannot become {state_name(to_state)}",
            {"from": state_name(visit.state), "to": state_name(to_state)},
        )


def transition(
    session: AsyncSession, visit: VisitRow, to_state: int, principal: Principal, at: datetime
) -> None:
    """Moves `visit` to `to_state`, recording when and by whom; refuses illegal moves."""
    require_transition(visit, to_state)
    session.add(
        VisitTransitionRow(
            visit_id=visit.visit_id,
            from_state=visit.state,
            to_state=to_state,
            transition_time=at,
            actor_id=principal.subject,
            actor_role=principal.role,
        )
    )
    visit.state = to_state
    visit.update_time = at
    session.add(visit)


def closed_seconds(periods: list[ConnectedPeriodRow]) -> int:
    return int(
        sum((p.end_time - p.start_time).total_seconds() for p in periods if p.end_time is not None)
    )


async def periods_of(session: AsyncSession, visit_id: str) -> list[ConnectedPeriodRow]:
    query = (
        select(ConnectedPeriodRow)
        .where(ConnectedPeriodRow.visit_id == visit_id)
        .order_by(col(ConnectedPeriodRow.start_time))
    )
    return list((await session.exec(query)).all())


async def histories_of(
    session: AsyncSession, visit_ids: list[str]
) -> tuple[dict[str, list[VisitTransitionRow]], dict[str, list[ConnectedPeriodRow]]]:
    """The transitions and connected periods of many visits, in two queries (a page of
    a list costs the same number of queries whatever its size)."""
    transitions: dict[str, list[VisitTransitionRow]] = {v: [] for v in visit_ids}
    periods: dict[str, list[ConnectedPeriodRow]] = {v: [] for v in visit_ids}
    if not visit_ids:
        return transitions, periods
    for row in await session.exec(
        select(VisitTransitionRow)
        .where(col(VisitTransitionRow.visit_id).in_(visit_ids))
        .order_by(col(VisitTransitionRow.transition_id))
    ):
        transitions[row.visit_id].append(row)
    for period in await session.exec(
        select(ConnectedPeriodRow)
        .where(col(ConnectedPeriodRow.visit_id).in_(visit_ids))
        .order_by(col(ConnectedPeriodRow.start_time))
    ):
        periods[period.visit_id].append(period)
    return transitions, periods


# Where the diagnosis codes are bound in their ciphertext.
VISITS_TABLE = "visits"
CODES_COLUMN = "diagnosis_codes"


def seal_codes(cipher: FieldCipher, visit: VisitRow, codes: list[str]) -> None:
    """Stores the visit's diagnosis codes, sealed."""
    visit.diagnosis_codes_enc = cipher.encrypt(
        ",".join(codes), table=VISITS_TABLE, column=CODES_COLUMN, row_id=visit.visit_id
    )


def open_codes(cipher: FieldCipher | None, visit: VisitRow) -> list[str]:
    """The visit's diagnosis codes (none before completion)."""
    if not visit.diagnosis_codes_enc:
        return []
    assert cipher is not None, "a completed visit's codes need the PHI cipher"
    plain = cipher.decrypt(
        visit.diagnosis_codes_enc, table=VISITS_TABLE, column=CODES_COLUMN, row_id=visit.visit_id
    )
    return [code for code in plain.split(",") if code]


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
