"""Booking throughput and latency on SQLite and PostgreSQL, beside the no-op baseline.

Each client is its own patient and books distinct free slots of one clinician as fast
as it can (closed loop), so every call is a real booking: idempotency record, slot
check, slot claims, visit and its first transition, in one transaction.

Profiling: `TELEMESH_BENCH_PYSPY=<folder>` records a py-spy flame graph of the session
service under every measured run (`<folder>/booking-<backend>-<clients>.svg`; see
`benchmarks.harness.profiled`).
`TELEMESH_BENCH_BACKENDS=sqlite` and `TELEMESH_BENCH_CLIENTS=16` narrow the run.
"""

from __future__ import annotations

import contextlib
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

from benchmarks.baseline import NoopTarget
from benchmarks.harness import Result, measure, profiled, row
from telemesh.session.v1 import session_pb2, session_pb2_grpc
from tests.support.flows import Flows, rid, ts
from tests.support.harness import Stack

CLIENTS = tuple(int(c) for c in os.environ.get("TELEMESH_BENCH_CLIENTS", "1,16,64").split(","))
BACKENDS = tuple(os.environ.get("TELEMESH_BENCH_BACKENDS", "sqlite,postgres").split(","))
SECONDS = 4.0
WARMUP = 0.5


async def _bookings(stack: Stack, clients: int, label: str) -> Result:
    flows = Flows(stack)
    try:
        clinician_id, _ = await flows.clinician()
        patients = [await flows.patient() for _ in range(clients)]
    finally:
        await flows.close()
    # Distinct slots for every (client, n): client c books c, c + clients, ...
    first = (datetime.now(UTC) + timedelta(hours=1)).replace(minute=0, second=0, microsecond=0)
    async with stack.channel("session") as channel:
        stub = session_pb2_grpc.SessionServiceStub(channel)

        async def book(client: int, n: int) -> None:
            patient_id, md = patients[client]
            start = first + timedelta(minutes=5 * (n * clients + client))
            await stub.BookVisit(
                session_pb2.BookVisitRequest(
                    request_id=rid(),
                    clinician_id=clinician_id,
                    patient_id=patient_id,
                    start_time=ts(start),
                ),
                metadata=md,
            )

        with profiled(stack["session"].pid, f"booking-{label}-{clients}", SECONDS + WARMUP):
            return await measure(f"BookVisit ({label})", book, clients, SECONDS, WARMUP)


async def run(home: Path) -> None:
    print("BookVisit, closed-loop clients; ratio = throughput / no-op baseline at the same clients")
    with NoopTarget(home / "noop") as noop:
        baselines = {clients: await noop.measure(clients, SECONDS) for clients in CLIENTS}
    for clients in CLIENTS:
        print(row(baselines[clients]))
    for backend in BACKENDS:
        (home / backend).mkdir()
        stack = Stack(home / backend, backend)
        with contextlib.closing(stack):
            stack.start("session")
            for clients in CLIENTS:
                print(row(await _bookings(stack, clients, backend), baselines[clients]))
