"""Booking: exactly one winner per slot, idempotent retries, atomic reschedule."""

from __future__ import annotations

import asyncio
from datetime import UTC, timedelta

import grpc
import pytest

from telemesh.errors import reason_of
from telemesh.session.v1 import session_pb2, session_pb2_grpc
from tests.support.flows import ALL_WEEK, Flows, rid, ts

P = session_pb2


async def test_fifty_concurrent_clients_one_slot_exactly_one_wins(flows: Flows) -> None:
    clinician_id, clinician_md = await flows.clinician()
    patients = [await flows.patient() for _ in range(50)]
    start = await flows.next_slot(clinician_id, clinician_md, skip=3)
    channels = [flows.stack.channel("session") for _ in patients]  # 50 separate clients

    async def book(
        channel: grpc.aio.Channel, patient_id: str, md: tuple[tuple[str, str], ...]
    ) -> object:
        stub = session_pb2_grpc.SessionServiceStub(channel)
        try:
            return await stub.BookVisit(
                P.BookVisitRequest(
                    request_id=rid(),
                    clinician_id=clinician_id,
                    patient_id=patient_id,
                    start_time=ts(start),
                ),
                metadata=md,
            )
        except grpc.aio.AioRpcError as error:
            return error

    try:
        results = await asyncio.gather(
            *(book(channel, pid, md) for channel, (pid, md) in zip(channels, patients, strict=True))
        )
    finally:
        for channel in channels:
            await channel.close()
    wins = [r for r in results if isinstance(r, P.BookVisitResponse)]
    losses = [r for r in results if isinstance(r, grpc.aio.AioRpcError)]
    assert len(wins) == 1
    assert len(losses) == 49
    assert {e.code() for e in losses} == {grpc.StatusCode.ALREADY_EXISTS}
    assert {reason_of(e) for e in losses} == {"SLOT_TAKEN"}
    # The slot is gone from the list, and the winner's visit holds it.
    listing = await flows.session.ListSlots(
        P.ListSlotsRequest(
            clinician_id=clinician_id, start_time=ts(start), end_time=ts(start + timedelta(hours=1))
        ),
        metadata=clinician_md,
    )
    assert all(slot.start_time.ToDatetime() != start.replace(tzinfo=None) for slot in listing.slots)


async def test_overlapping_slots_of_different_lengths_cannot_both_be_booked(flows: Flows) -> None:
    clinician_id, clinician_md = await flows.clinician(slot_minutes=30)
    (a, a_md), (b, b_md) = await flows.patient(), await flows.patient()
    # A 30-minute slot on the hour: 20 minutes into it lies on the 20-minute grid too.
    first = await flows.next_slot(clinician_id, a_md, skip=2)
    if first.minute:
        first = await flows.next_slot(clinician_id, a_md, skip=3)
    await flows.session.BookVisit(
        P.BookVisitRequest(
            request_id=rid(), clinician_id=clinician_id, patient_id=a, start_time=ts(first)
        ),
        metadata=a_md,
    )
    # The clinician switches to 20-minute slots: 20 minutes into the booked one is a slot now.
    await flows.session.SetWeeklyAvailability(
        P.SetWeeklyAvailabilityRequest(
            request_id=rid(),
            clinician_id=clinician_id,
            slot_minutes=20,
            hours=ALL_WEEK,
        ),
        metadata=clinician_md,
    )
    overlapping = first + timedelta(minutes=20)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await flows.session.BookVisit(
            P.BookVisitRequest(
                request_id=rid(),
                clinician_id=clinician_id,
                patient_id=b,
                start_time=ts(overlapping),
            ),
            metadata=b_md,
        )
    assert caught.value.code() == grpc.StatusCode.ALREADY_EXISTS
    assert reason_of(caught.value) == "SLOT_TAKEN"


async def test_a_retry_with_the_same_request_id_returns_the_first_answer(flows: Flows) -> None:
    clinician_id, _ = await flows.clinician()
    patient_id, md = await flows.patient()
    start = await flows.next_slot(clinician_id, md)
    request = P.BookVisitRequest(
        request_id=rid(), clinician_id=clinician_id, patient_id=patient_id, start_time=ts(start)
    )
    first, again = await asyncio.gather(
        flows.session.BookVisit(request, metadata=md), flows.session.BookVisit(request, metadata=md)
    )
    third = await flows.session.BookVisit(request, metadata=md)
    assert first.visit.visit_id == again.visit.visit_id == third.visit.visit_id
    listing = await flows.session.ListVisits(P.ListVisitsRequest(), metadata=md)
    assert [v.visit_id for v in listing.visits] == [first.visit.visit_id]
    # The same request_id for a different request is refused, not replayed.
    other = P.BookVisitRequest(
        request_id=request.request_id,
        clinician_id=clinician_id,
        patient_id=patient_id,
        start_time=ts(start + timedelta(minutes=5)),
    )
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await flows.session.BookVisit(other, metadata=md)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_reschedule_frees_the_old_slot_only_when_the_new_one_is_booked(flows: Flows) -> None:
    clinician_id, _ = await flows.clinician()
    (a, a_md), (b, b_md) = await flows.patient(), await flows.patient()
    first = await flows.next_slot(clinician_id, a_md, skip=2)
    taken = first + timedelta(minutes=15)
    visit = (
        await flows.session.BookVisit(
            P.BookVisitRequest(
                request_id=rid(), clinician_id=clinician_id, patient_id=a, start_time=ts(first)
            ),
            metadata=a_md,
        )
    ).visit
    await flows.session.BookVisit(
        P.BookVisitRequest(
            request_id=rid(), clinician_id=clinician_id, patient_id=b, start_time=ts(taken)
        ),
        metadata=b_md,
    )
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await flows.session.RescheduleVisit(
            P.RescheduleVisitRequest(
                request_id=rid(), visit_id=visit.visit_id, new_start_time=ts(taken)
            ),
            metadata=a_md,
        )
    assert reason_of(caught.value) == "SLOT_TAKEN"
    # The failed move kept the old slot: nobody else can take it.
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await flows.session.BookVisit(
            P.BookVisitRequest(
                request_id=rid(), clinician_id=clinician_id, patient_id=b, start_time=ts(first)
            ),
            metadata=b_md,
        )
    assert reason_of(caught.value) == "SLOT_TAKEN"
    moved = await flows.session.RescheduleVisit(
        P.RescheduleVisitRequest(
            request_id=rid(),
            visit_id=visit.visit_id,
            new_start_time=ts(taken + timedelta(minutes=10)),
        ),
        metadata=a_md,
    )
    assert moved.visit.start_time.ToDatetime() == (taken + timedelta(minutes=10)).replace(
        tzinfo=None
    )
    # Now the old slot is free again.
    await flows.session.BookVisit(
        P.BookVisitRequest(
            request_id=rid(), clinician_id=clinician_id, patient_id=b, start_time=ts(first)
        ),
        metadata=b_md,
    )


async def test_cancel_needs_a_reason_and_frees_the_slot(flows: Flows) -> None:
    visit = await flows.book()
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await flows.session.CancelVisit(
            P.CancelVisitRequest(request_id=rid(), visit_id=visit.visit_id), metadata=visit.patient
        )
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    cancelled = await flows.session.CancelVisit(
        P.CancelVisitRequest(
            request_id=rid(),
            visit_id=visit.visit_id,
            reason=P.CancelReason.CANCEL_REASON_PATIENT_REQUEST,
        ),
        metadata=visit.patient,
    )
    assert cancelled.visit.state == P.VisitState.VISIT_STATE_CANCELLED
    assert cancelled.visit.transitions[-1].actor_id == visit.patient_id
    other_id, other_md = await flows.patient()
    rebooked = await flows.session.BookVisit(
        P.BookVisitRequest(
            request_id=rid(),
            clinician_id=visit.clinician_id,
            patient_id=other_id,
            start_time=ts(visit.start_time),
        ),
        metadata=other_md,
    )
    assert rebooked.visit.state == P.VisitState.VISIT_STATE_BOOKED


async def test_a_visit_says_when_its_check_in_opens_and_closes(flows: Flows) -> None:
    visit = await flows.book()
    reply = await flows.session.GetVisit(
        P.GetVisitRequest(visit_id=visit.visit_id), metadata=visit.patient
    )
    shown = reply.visit
    start = shown.start_time.ToDatetime(tzinfo=UTC)
    # The service's join window (TELEMESH_JOIN_WINDOW_BEFORE_MINUTES, 15 by default).
    assert shown.check_in_open_time.ToDatetime(tzinfo=UTC) == start - timedelta(minutes=15)
    assert shown.check_in_close_time == shown.end_time
