"""What the billing service acknowledged survives a crash (SIGKILL), and redelivery after
the restart still makes exactly one charge per visit."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import grpc
import pytest

from telemesh.billing.v1 import billing_pb2
from tests.support.billing import Billing, completion
from tests.support.harness import Stack

VISITS = 60
KILL_AFTER_ACKS = 25


async def test_acknowledged_charges_survive_sigkill(
    backend: str, make_stack: Callable[..., Stack]
) -> None:
    stack = make_stack(backend, "session", "billing")
    requests = [completion() for _ in range(VISITS)]
    acknowledged: dict[str, billing_pb2.Charge] = {}

    async with stack.channel("billing") as channel:
        billing = Billing(stack, channel)
        calls = [asyncio.ensure_future(billing.record(request)) for request in requests]
        # Kill the process the moment enough deliveries are acknowledged, while the
        # others are still in flight.
        for finished in asyncio.as_completed(calls):
            try:
                reply = await finished
            except grpc.aio.AioRpcError:
                continue
            acknowledged[reply.charge.visit_id] = reply.charge
            if len(acknowledged) == KILL_AFTER_ACKS:
                stack["billing"].kill()
                break
        await asyncio.gather(*calls, return_exceptions=True)
    # Replies that arrived with the kill were acknowledged too.
    for call in calls:
        if not call.exception():
            acknowledged[call.result().charge.visit_id] = call.result().charge
    assert len(acknowledged) >= KILL_AFTER_ACKS
    assert len(acknowledged) < VISITS, "the kill came after every delivery; nothing was tested"

    stack["billing"].restart()
    async with stack.channel("billing") as channel:
        billing = Billing(stack, channel)
        # Every acknowledged charge is there, exactly as acknowledged.
        for visit_id, charge in acknowledged.items():
            stored = await billing.stub.GetCharge(
                billing_pb2.GetChargeRequest(charge_id=charge.charge_id),
                metadata=billing.billing,
            )
            assert stored.charge == charge, visit_id
        # The relay redelivers everything: acknowledged visits are not charged again,
        # and every visit ends with exactly one charge.
        replies = await asyncio.gather(*(billing.record(request) for request in requests))
        for request, reply in zip(requests, replies, strict=True):
            if request.visit_id in acknowledged:
                assert not reply.created
                assert reply.charge.charge_id == acknowledged[request.visit_id].charge_id
        listed = await billing.stub.ListCharges(
            billing_pb2.ListChargesRequest(page_size=500), metadata=billing.billing
        )
        assert sorted(c.visit_id for c in listed.charges) == sorted(r.visit_id for r in requests)


def test_bad_billing_configuration_stops_the_start(home: Path) -> None:
    stack = Stack(home, "sqlite", {"TELEMESH_BILLING_RULE_SET": "no-such-rules"})
    try:
        with pytest.raises(RuntimeError, match="unknown rule set"):
            stack.start("billing")
    finally:
        stack.close()
