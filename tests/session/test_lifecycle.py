"""The visit's life: legal moves recorded with time and actor; every illegal one refused."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

import grpc
import pytest

from telemesh.errors import reason_of
from telemesh.session.v1 import session_pb2
from tests.support.flows import Flows, Visit, rid, ts

P = session_pb2
S = P.VisitState

Action = Callable[[Flows, Visit], Awaitable[object]]


async def _check_in(flows: Flows, visit: Visit) -> object:
    return await flows.check_in(visit)


async def _admit(flows: Flows, visit: Visit) -> object:
    return await flows.admit(visit)


async def _complete(flows: Flows, visit: Visit) -> object:
    return await flows.complete(visit)


async def _cancel(flows: Flows, visit: Visit) -> object:
    return await flows.session.CancelVisit(
        P.CancelVisitRequest(
            request_id=rid(), visit_id=visit.visit_id, reason=P.CANCEL_REASON_PATIENT_REQUEST
        ),
        metadata=visit.patient,
    )


async def _no_show(flows: Flows, visit: Visit) -> object:
    return await flows.session.MarkNoShow(
        P.MarkNoShowRequest(request_id=rid(), visit_id=visit.visit_id), metadata=visit.clinician
    )


ACTIONS: dict[str, Action] = {
    "check_in": _check_in,
    "admit": _admit,
    "complete": _complete,
    "cancel": _cancel,
    "no_show": _no_show,
}

# How to bring a fresh visit into each state reachable in real time.
PATHS: dict[str, list[str]] = {
    "booked": [],
    "checked_in": ["check_in"],
    "in_progress": ["check_in", "admit"],
    "completed": ["check_in", "admit", "complete"],
    "cancelled": ["cancel"],
}
LEGAL = {
    "booked": {"check_in", "cancel", "no_show"},
    "checked_in": {"admit", "cancel", "no_show"},
    "in_progress": {"complete"},
    "completed": set(),
    "cancelled": set(),
}
ILLEGAL = [
    (state, action)
    for state in PATHS
    for action in ACTIONS
    if action not in LEGAL[state] and action != "no_show"
]


@pytest.mark.parametrize(("state", "action"), ILLEGAL, ids=[f"{s}-{a}" for s, a in ILLEGAL])
async def test_an_illegal_transition_is_refused(flows: Flows, state: str, action: str) -> None:
    visit = await flows.book()
    for step in PATHS[state]:
        await ACTIONS[step](flows, visit)
    before = await flows.session.GetVisit(
        P.GetVisitRequest(visit_id=visit.visit_id), metadata=visit.patient
    )
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await ACTIONS[action](flows, visit)
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert reason_of(caught.value) == "ILLEGAL_TRANSITION"
    after = await flows.session.GetVisit(
        P.GetVisitRequest(visit_id=visit.visit_id), metadata=visit.patient
    )
    assert after.visit == before.visit, "nothing was written"


NO_SHOW_ILLEGAL = ["in_progress", "completed", "cancelled"]


@pytest.mark.parametrize("state", NO_SHOW_ILLEGAL)
async def test_no_show_is_refused_after_the_patient_was_seen_or_cancelled(
    flows: Flows, state: str
) -> None:
    visit = await flows.book()
    for step in PATHS[state]:
        await ACTIONS[step](flows, visit)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await _no_show(flows, visit)
    assert reason_of(caught.value) == "ILLEGAL_TRANSITION"


async def test_no_show_waits_for_the_grace_period(flows: Flows) -> None:
    visit = await flows.book()
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await _no_show(flows, visit)
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert reason_of(caught.value) == "GRACE_PERIOD"


async def test_a_whole_visit_records_every_transition_and_its_connected_time(flows: Flows) -> None:
    visit = await flows.book()
    await flows.check_in(visit, P.PATIENT_LOCATION_OTHER)
    admitted = await flows.admit(visit)
    admitted_at = admitted.transitions[-1].transition_time.ToDatetime(tzinfo=UTC)
    signaling = flows.tokens.service("signaling")

    async def report(kind: P.ConnectionEventKind.ValueType, at: datetime) -> None:
        await flows.session.RecordConnectionEvent(
            P.RecordConnectionEventRequest(
                request_id=rid(), visit_id=visit.visit_id, kind=kind, event_time=ts(at)
            ),
            metadata=signaling,
        )

    # Event times come from the peers: no waiting, and every figure below is exact.
    # A peer clock a minute behind: connected time still counts from admission only.
    await report(P.CONNECTION_EVENT_KIND_CONNECTED, admitted_at - timedelta(seconds=60))
    await report(P.CONNECTION_EVENT_KIND_DISCONNECTED, admitted_at + timedelta(seconds=2))
    await report(P.CONNECTION_EVENT_KIND_CONNECTED, admitted_at + timedelta(seconds=3))
    await report(P.CONNECTION_EVENT_KIND_CONNECTED, admitted_at + timedelta(seconds=4))  # open
    done = await flows.complete(visit, codes=("J06.9", "R05.9"), audio_only=True)
    assert done.state == S.VISIT_STATE_COMPLETED
    assert [(t.from_state, t.to_state, t.actor_id) for t in done.transitions] == [
        (S.VISIT_STATE_UNSPECIFIED, S.VISIT_STATE_BOOKED, visit.patient_id),
        (S.VISIT_STATE_BOOKED, S.VISIT_STATE_CHECKED_IN, visit.patient_id),
        (S.VISIT_STATE_CHECKED_IN, S.VISIT_STATE_IN_PROGRESS, visit.clinician_id),
        (S.VISIT_STATE_IN_PROGRESS, S.VISIT_STATE_COMPLETED, visit.clinician_id),
    ]
    periods = [
        (p.start_time.ToDatetime(tzinfo=UTC), p.end_time.ToDatetime(tzinfo=UTC))
        for p in done.connected_periods
    ]
    assert all(p.HasField("end_time") for p in done.connected_periods), "completion closes the call"
    assert periods[0] == (admitted_at, admitted_at + timedelta(seconds=2))
    second_start, second_end = periods[1]
    assert second_start == admitted_at + timedelta(seconds=3), "a repeated CONNECTED is a no-op"
    completed_at = done.transitions[-1].transition_time.ToDatetime(tzinfo=UTC)
    assert second_end == max(completed_at, second_start), "closed at completion, never negative"
    assert len(periods) == 2
    assert done.connected_seconds == int(
        sum((end - start).total_seconds() for start, end in periods)
    )
    assert done.patient_location == P.PATIENT_LOCATION_OTHER
    assert list(done.diagnosis_codes) == ["J06.9", "R05.9"]
    assert done.audio_only
    assert done.new_patient


async def test_connection_events_come_only_from_signaling(
    flows: Flows, session_stack: object
) -> None:
    visit = await flows.book()
    await flows.check_in(visit)
    await flows.admit(visit)
    request = P.RecordConnectionEventRequest(
        request_id=rid(),
        visit_id=visit.visit_id,
        kind=P.CONNECTION_EVENT_KIND_CONNECTED,
        event_time=ts(datetime.now(UTC)),
    )
    for md in (visit.patient, visit.clinician, flows.tokens.service("billing")):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await flows.session.RecordConnectionEvent(request, metadata=md)
        assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED


async def test_a_hang_up_after_completion_is_acknowledged(
    flows: Flows, session_stack: object
) -> None:
    """The peers leave after the clinician completed the visit: their disconnection is
    late news (completion closed the call), not an error; a connection is refused."""
    visit = await flows.book()
    await flows.check_in(visit)
    await flows.admit(visit)
    done = await flows.complete(visit)
    signaling = flows.tokens.service("signaling")

    def event(kind: P.ConnectionEventKind.ValueType) -> P.RecordConnectionEventRequest:
        return P.RecordConnectionEventRequest(
            request_id=rid(), visit_id=visit.visit_id, kind=kind, event_time=ts(datetime.now(UTC))
        )

    reply = await flows.session.RecordConnectionEvent(
        event(P.CONNECTION_EVENT_KIND_DISCONNECTED), metadata=signaling
    )
    assert reply.connected_seconds == done.connected_seconds
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await flows.session.RecordConnectionEvent(
            event(P.CONNECTION_EVENT_KIND_CONNECTED), metadata=signaling
        )
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    after = await flows.session.GetVisit(
        P.GetVisitRequest(visit_id=visit.visit_id), metadata=visit.clinician
    )
    assert after.visit.connected_seconds == done.connected_seconds
    assert len(after.visit.connected_periods) == len(done.connected_periods)
