"""Visits in the database: loading, the visit's life (transitions), connected periods,
the sealed diagnosis codes. Who may touch a visit is in `access`; its proto view in
`convert`."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from svc_session.models import ConnectedPeriodRow, VisitRow, VisitTransitionRow
from telemesh.auth import Principal
from telemesh.errors import FailedPrecondition, NotFound
from telemesh.field_crypto import FieldCipher
from telemesh.session.v1 import session_pb2
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


def closed_seconds(periods: Sequence[ConnectedPeriodRow]) -> int:
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
