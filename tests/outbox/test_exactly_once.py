"""A charge for every completed visit, exactly once, whatever crashes in between.

500 visits are completed through the session service while the billing service is
killed (SIGKILL) and restarted twice and the standalone outbox relay once. Afterwards
billing holds exactly one charge per completed visit: none lost, none doubled.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest

from telemesh.billing.v1 import billing_pb2, billing_pb2_grpc
from telemesh.session.v1 import session_pb2
from telemesh_tools.stack.process import ManagedProcess
from tests.support.flows import Flows, Metadata, Visit, rid, ts
from tests.support.harness import REPO, Stack

VISITS = 500
PILE_UP = 20  # visits completed while billing or the relay is down
PATIENTS = 25
WORKERS = 8


def relay_process(stack: Stack) -> ManagedProcess:
    env = stack.env_for("session", stack["session"].env["TELEMESH_DATABASE_URL"])
    return ManagedProcess(
        "outbox-relay",
        [sys.executable, "-m", "telemesh.outbox_relay", "--service", "session"],
        env,
        stack.home / "relay.log",
        cwd=REPO,
    )


async def _all_charges(
    stub: billing_pb2_grpc.BillingServiceAsyncStub, md: tuple[tuple[str, str], ...]
) -> list[billing_pb2.Charge]:
    charges: list[billing_pb2.Charge] = []
    token = ""
    while True:
        page = await stub.ListCharges(
            billing_pb2.ListChargesRequest(page_size=500, page_token=token), metadata=md
        )
        charges.extend(page.charges)
        token = page.next_page_token
        if not token:
            return charges


@pytest.mark.postgres
async def test_500_completions_through_crashes_make_exactly_500_charges(
    make_stack: Callable[..., Stack],
) -> None:
    # One backend keeps the suite's time in check: PostgreSQL, whose relay claims with
    # SKIP LOCKED; SQLite's claim path is covered by the smaller tests beside this one.
    backend = "postgres"
    # A wide check-in window lets one clinician's next 500 slots all be checked in now.
    stack = make_stack(
        backend,
        "session",
        "billing",
        TELEMESH_OUTBOX_RELAY="0",
        TELEMESH_JOIN_WINDOW_BEFORE_MINUTES="100000",
    )
    relay = relay_process(stack).start()
    flows = Flows(stack)
    clinician_id, _ = await flows.clinician()
    patients = [await flows.patient() for _ in range(PATIENTS)]
    first = (datetime.now(UTC) + timedelta(minutes=10)).replace(second=0, microsecond=0)
    first -= timedelta(minutes=first.minute % 5)
    completed: list[str] = []
    progress = asyncio.Event()
    queue: asyncio.Queue[int] = asyncio.Queue()
    for n in range(VISITS):
        queue.put_nowait(n)

    async def visit(n: int) -> None:
        patient_id, md = patients[n % PATIENTS]
        booked = await flows.session.BookVisit(
            session_pb2.BookVisitRequest(
                request_id=rid(),
                clinician_id=clinician_id,
                patient_id=patient_id,
                start_time=ts(first + timedelta(minutes=5 * n)),
            ),
            metadata=md,
        )
        handle = flows_visit(booked.visit, md, stack.tokens.clinician(clinician_id))
        await flows.check_in(handle)
        await flows.admit(handle)
        await flows.complete(handle, codes=("Z00.00",))
        completed.append(booked.visit.visit_id)
        progress.set()

    async def worker() -> None:
        while not queue.empty():
            await visit(queue.get_nowait())

    async def completions_reach(count: int) -> None:
        while len(completed) < count:
            progress.clear()
            await progress.wait()

    async def chaos() -> None:
        billing = stack["billing"]
        for threshold, victim in ((100, "billing"), (250, "billing"), (350, "relay")):
            await completions_reach(threshold)
            # Down until more visits complete: their events pile up in the outbox.
            if victim == "billing":
                billing.kill()
                await completions_reach(threshold + PILE_UP)
                await asyncio.to_thread(billing.restart)
            else:
                relay.kill()
                await completions_reach(threshold + PILE_UP)
                relay.start()

    try:
        await asyncio.gather(chaos(), *(worker() for _ in range(WORKERS)))
        assert len(completed) == VISITS
        async with stack.channel("billing") as channel:
            stub = billing_pb2_grpc.BillingServiceStub(channel)
            md = stack.tokens.role("billing", "clerk-1")
            deadline = asyncio.get_running_loop().time() + 120
            while True:
                charges = await _all_charges(stub, md)
                if len(charges) >= VISITS or asyncio.get_running_loop().time() > deadline:
                    break
                await asyncio.sleep(0.5)
        visit_ids = [charge.visit_id for charge in charges]
        assert len(visit_ids) == VISITS, f"{len(visit_ids)} charges for {VISITS} completed visits"
        assert len(set(visit_ids)) == VISITS, "a visit was charged twice"
        assert set(visit_ids) == set(completed)
        assert "outbox delivery failed" in stack.logs() + relay.logs(), (
            "deliveries did fail meanwhile"
        )
    finally:
        relay.stop()
        await flows.close()


def flows_visit(visit: session_pb2.Visit, patient_md: Metadata, clinician_md: Metadata) -> Visit:
    return Visit(
        visit.visit_id,
        visit.patient_id,
        visit.clinician_id,
        patient_md,
        clinician_md,
        visit.start_time.ToDatetime(tzinfo=UTC),
    )
