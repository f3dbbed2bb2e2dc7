"""Outbox drain rate: completions delivered and charged per second by the relay, beside
direct RecordVisitCompletion calls to the same billing service in the same run.

N visits are completed with no relay running, so their events wait in the session
service's outbox (two per visit: the charge for billing, the room's closing for
signaling); then the standalone relay starts, and the events left after its first
delivered batch over the time until the outbox is empty give the drain rate.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from benchmarks.billing import direct_completions
from benchmarks.harness import profiled
from telemesh.db import Database
from telemesh.outbox import backlog
from telemesh.session.v1 import session_pb2
from telemesh_tools.stack.process import ManagedProcess
from tests.support.flows import Flows, Visit, rid, ts
from tests.support.harness import REPO, Stack

EVENTS = 400
RELAY_CONCURRENCY = 8  # RelaySettings.concurrency


async def _complete_visits(stack: Stack, count: int) -> None:
    flows = Flows(stack)
    try:
        clinician_id, clinician_md = await flows.clinician()
        patient_id, patient_md = await flows.patient()
        first = (datetime.now(UTC) + timedelta(minutes=10)).replace(second=0, microsecond=0)
        first -= timedelta(minutes=first.minute % 5)
        queue: asyncio.Queue[int] = asyncio.Queue()
        for n in range(count):
            queue.put_nowait(n)

        async def worker() -> None:
            while not queue.empty():
                n = queue.get_nowait()
                booked = await flows.session.BookVisit(
                    session_pb2.BookVisitRequest(
                        request_id=rid(),
                        clinician_id=clinician_id,
                        patient_id=patient_id,
                        start_time=ts(first + timedelta(minutes=5 * n)),
                    ),
                    metadata=patient_md,
                )
                visit = Visit(
                    booked.visit.visit_id, patient_id, clinician_id, patient_md, clinician_md, first
                )
                await flows.check_in(visit)
                await flows.admit(visit)
                await flows.complete(visit)

        await asyncio.gather(*(worker() for _ in range(8)))
    finally:
        await flows.close()


async def run(home: Path) -> None:
    print(f"outbox drain: {EVENTS} completion events, relay vs direct calls (SQLite)")
    stack = Stack(
        home,
        "sqlite",
        {"TELEMESH_OUTBOX_RELAY": "0", "TELEMESH_JOIN_WINDOW_BEFORE_MINUTES": "100000"},
    )
    with contextlib.closing(stack):
        stack.start("session", "billing", "signaling")
        await _complete_visits(stack, EVENTS)
        session_db = Database(stack["session"].env["TELEMESH_DATABASE_URL"])
        try:
            # Each completion leaves two events: its charge (billing) and its room's
            # closing (signaling); the relay drains both.
            total, _ = await backlog(session_db)
            assert total == 2 * EVENTS, total
            relay = ManagedProcess(
                "relay",
                [sys.executable, "-m", "telemesh.outbox_relay", "--service", "session"],
                stack.env_for("session", stack["session"].env["TELEMESH_DATABASE_URL"]),
                home / "relay.log",
                cwd=REPO,
            ).start()
            try:
                with profiled(relay.pid, "outbox-relay", 10.0):
                    # Polls another process's database: there is nothing to await
                    # instead. The clock starts at the first batch seen delivered (the
                    # relay process has started by then) and counts what was left then.
                    while (left := (await backlog(session_db))[0]) == total:  # noqa: ASYNC110
                        await asyncio.sleep(0.01)
                    began, counted = time.perf_counter(), left
                    while left:
                        await asyncio.sleep(0.02)
                        left, dead = await backlog(session_db)
                        assert not dead, "no event may be refused"
                    drained = time.perf_counter() - began
            finally:
                relay.stop()
        finally:
            await session_db.dispose()
        rate = counted / drained
        token = stack.tokens.issuer.mint("session", "service")
        direct = await direct_completions(stack.addresses["billing"], token, RELAY_CONCURRENCY)
        print(
            f"  outbox relay drain (concurrency {RELAY_CONCURRENCY})  {rate:>8.0f} events/s"
            f"  (charges and room closings alike)"
        )
        print(
            f"  direct RecordVisitCompletion ({RELAY_CONCURRENCY} clients)"
            f"  {direct.throughput:>8.0f} calls/s"
            f"  p50 {direct.p50_ms:.2f} ms  p99 {direct.p99_ms:.2f} ms"
        )
        print(f"  drain rate x{rate / direct.throughput:.2f} of direct calls (aim: x1 or more)")
