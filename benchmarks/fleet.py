"""`make load`: whole visits through the edge, at 1 and 2 replicas of every service.

Each visit runs every step a real one does, through the edge with end-user tokens:
book (a new clinician and patient), telehealth consent, check-in, both join tokens,
both participants in the room (JoinRoom streams, with the signaling affinity header),
admission, the offer/answer exchange, both connections reported, completion, and the
charge (polled until the outbox relay delivered it and billing coded it). Most visits
are signaling-only peers (real messages, no media); `MEDIA_VISITS` of them are whole
calls between two real aiortc peers (the demo's). Printed per replica count: visits per
minute, p50/p99 per step, errors (must be 0), and how many visits left exactly one trace.

`TELEMESH_LOAD_VISITS` (default 40), `TELEMESH_LOAD_CONCURRENCY` (10),
`TELEMESH_LOAD_REPLICAS` ("1,2"), `TELEMESH_TEST_PG_URL` (the PostgreSQL server).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import grpc
from tqdm import tqdm

from benchmarks.harness import percentile
from telemesh.billing.v1 import billing_pb2, billing_pb2_grpc
from telemesh.clients import VISIT_AFFINITY
from telemesh.identity.tokens import DevIssuer
from telemesh.signaling.v1 import signaling_pb2, signaling_pb2_grpc
from telemesh_tools.demo.run import Progress, edge_channel_factory, play_visit
from telemesh_tools.demo.steps import Visit, VisitSteps, rid
from telemesh_tools.tracestore.store import SpanStore
from tests.support.harness import MeshUp, fleet_databases

VISITS = int(os.environ.get("TELEMESH_LOAD_VISITS", "40"))
CONCURRENCY = int(os.environ.get("TELEMESH_LOAD_CONCURRENCY", "10"))
REPLICAS = tuple(int(n) for n in os.environ.get("TELEMESH_LOAD_REPLICAS", "1,2").split(","))
MEDIA_VISITS = 2
OFFER = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n"
ANSWER = OFFER.replace("o=- 1 1", "o=- 2 1")
T = TypeVar("T")


@dataclass
class Tally:
    """Per-step latencies (ms), errors by step, the visits that finished."""

    steps: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    errors: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    visits: list[str] = field(default_factory=list)

    async def step(self, name: str, work: Awaitable[T]) -> T:
        began = time.perf_counter()
        try:
            result = await work
        except BaseException:
            self.errors[name] += 1
            raise
        self.steps[name].append((time.perf_counter() - began) * 1000)
        return result


class SignalingOnlyVisit:
    """Both participants of one visit as signaling clients without media."""

    def __init__(self, steps: VisitSteps, visit: Visit, channel: grpc.aio.Channel) -> None:
        self.visit = visit
        self.stub = signaling_pb2_grpc.SignalingServiceStub(channel)
        self.affinity = ((VISIT_AFFINITY["signaling"], visit.visit_id),)
        self.events: dict[str, asyncio.Queue[signaling_pb2.JoinRoomResponse]] = {
            "patient": asyncio.Queue(),
            "clinician": asyncio.Queue(),
        }
        self.streams: list[grpc.aio.UnaryStreamCall[object, object]] = []
        self.tasks: list[asyncio.Task[None]] = []
        self.room_id = ""

    def metadata(self, role: str) -> tuple[tuple[str, str], ...]:
        base = self.visit.patient if role == "patient" else self.visit.clinician
        return (*base, *self.affinity)

    async def join(self, tokens: dict[str, str]) -> None:
        for role in ("clinician", "patient"):
            call = self.stub.JoinRoom(
                signaling_pb2.JoinRoomRequest(join_token=tokens[role]),
                metadata=self.metadata(role),
            )
            self.streams.append(call)  # type: ignore[arg-type]
            self.tasks.append(asyncio.create_task(self._read(call, role)))
            joined = await self.next_event(role, "joined")
            self.room_id = joined.joined.room_id

    async def _read(self, call: object, role: str) -> None:
        with contextlib.suppress(grpc.aio.AioRpcError, asyncio.CancelledError):
            async for event in call:  # type: ignore[attr-defined]
                self.events[role].put_nowait(event)

    async def next_event(self, role: str, kind: str) -> signaling_pb2.JoinRoomResponse:
        async with asyncio.timeout(30):
            while True:
                event = await self.events[role].get()
                if event.WhichOneof("event") == kind:
                    return event

    async def admit(self) -> None:
        await self.stub.AdmitPatient(
            signaling_pb2.AdmitPatientRequest(request_id=rid(), room_id=self.room_id),
            metadata=self.metadata("clinician"),
        )
        await self.next_event("patient", "admitted")

    async def exchange(self) -> None:
        """The patient's offer reaches the clinician; the answer comes back."""
        for sender, receiver, sdp_type, sdp in (
            ("patient", "clinician", signaling_pb2.SDP_TYPE_OFFER, OFFER),
            ("clinician", "patient", signaling_pb2.SDP_TYPE_ANSWER, ANSWER),
        ):
            await self.stub.SendSessionDescription(
                signaling_pb2.SendSessionDescriptionRequest(
                    request_id=rid(),
                    room_id=self.room_id,
                    description=signaling_pb2.SessionDescription(type=sdp_type, sdp=sdp),
                ),
                metadata=self.metadata(sender),
            )
            await self.next_event(receiver, "session_description")

    async def connected(self) -> None:
        for role in ("patient", "clinician"):
            await self.stub.ReportConnectionState(
                signaling_pb2.ReportConnectionStateRequest(
                    request_id=rid(),
                    room_id=self.room_id,
                    state=signaling_pb2.CONNECTION_STATE_CONNECTED,
                ),
                metadata=self.metadata(role),
            )

    def close(self) -> None:
        for call in self.streams:
            call.cancel()
        for task in self.tasks:
            task.cancel()


async def _charged(billing: billing_pb2_grpc.BillingServiceAsyncStub, visit: Visit) -> None:
    deadline = time.monotonic() + 60
    while True:
        reply = await billing.ListCharges(
            billing_pb2.ListChargesRequest(patient_id=visit.patient_id, visit_id=visit.visit_id),
            metadata=visit.patient,
        )
        if reply.charges:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"visit {visit.visit_id} was not charged within 60 s")
        await asyncio.sleep(0.2)


async def signaling_only_visit(steps: VisitSteps, tally: Tally) -> None:
    visit = await tally.step("book", steps.book())
    await tally.step("consent", steps.grant_telehealth(visit))
    await tally.step("check in", steps.check_in(visit))
    tokens = {
        "patient": await tally.step("join token", steps.join_token(visit, "patient")),
        "clinician": await tally.step("join token", steps.join_token(visit, "clinician")),
    }
    room = SignalingOnlyVisit(steps, visit, steps.channel("signaling"))
    try:
        await tally.step("join room", room.join(tokens))
        await tally.step("admit", room.admit())
        await tally.step("offer/answer", room.exchange())
        await tally.step("connected", room.connected())
        await tally.step("complete", steps.complete(visit))
    finally:
        room.close()
    billing = billing_pb2_grpc.BillingServiceStub(steps.channel("billing"))
    await tally.step("billed", _charged(billing, visit))
    tally.visits.append(visit.visit_id)


async def media_visit(steps: VisitSteps, tally: Tally) -> None:
    lines: list[str] = []
    summary = await tally.step(
        "whole call (media)", play_visit(steps, Progress(lines.append), call_seconds=2)
    )
    tally.visits.append(summary.visit_id)


@contextlib.contextmanager
def fleet(home: Path, replicas: int) -> Iterator[MeshUp]:
    """`telemesh up --replicas N` on PostgreSQL databases of its own."""
    with fleet_databases("load") as databases:
        mesh = MeshUp.start(home, *databases.up_args(replicas))
        try:
            yield mesh
        finally:
            mesh.close()


async def load(mesh: MeshUp, replicas: int) -> tuple[Tally, float]:
    steps = VisitSteps(edge_channel_factory(mesh.endpoints), DevIssuer(mesh.home))
    tally = Tally()
    kinds: list[Callable[[VisitSteps, Tally], Awaitable[None]]] = [media_visit] * MEDIA_VISITS
    kinds += [signaling_only_visit] * (VISITS - MEDIA_VISITS)
    queue = list(kinds)
    bar = tqdm(total=len(kinds), desc=f"{replicas} replica(s)", unit="visit", leave=False)

    async def worker() -> None:
        while queue:
            kind = queue.pop(0)
            with contextlib.suppress(Exception):  # counted in the tally
                await kind(steps, tally)
            bar.update(1)

    began = time.perf_counter()
    try:
        await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
    finally:
        bar.close()
        await steps.close()
    return tally, time.perf_counter() - began


def traces_of(mesh: MeshUp, visits: list[str]) -> dict[str, int]:
    """How many traces each of `visits` left in the local trace store (one: the spans of
    every service and replica that worked on the visit are under the visit's trace)."""
    time.sleep(2)  # the last spans are exported within a second or so
    store = SpanStore(mesh.home / "traces.db")
    try:
        return {visit_id: len(store.traces_of_visit(visit_id)) for visit_id in visits}
    finally:
        store.close()


def report(replicas: int, tally: Tally, seconds: float, traces: dict[str, int]) -> None:
    done = len(tally.visits)
    whole_traces = sum(1 for count in traces.values() if count == 1)
    print(
        f"  {replicas} replica(s): {done}/{VISITS} visits in {seconds:.1f} s,"
        f" {done / seconds * 60:.0f} visits/min at {CONCURRENCY} at once;"
        f" errors {sum(tally.errors.values())}; one trace per visit: {whole_traces}/{done}"
    )
    for name, samples in tally.steps.items():
        print(
            f"    {name:<20} p50 {percentile(samples, 0.5):8.1f} ms"
            f"  p99 {percentile(samples, 0.99):8.1f} ms  n={len(samples)}"
            f"  errors {tally.errors.get(name, 0)}"
        )
    for name, count in tally.errors.items():
        if name not in tally.steps:
            print(f"    {name:<20} errors {count}")
    for visit_id, count in traces.items():
        if count != 1:
            print(f"    visit {visit_id}: {count} traces (telemesh trace {visit_id})")


async def run(home: Path) -> None:
    print(f"load: {VISITS} whole visits through the edge, {CONCURRENCY} at once")
    for replicas in REPLICAS:
        with fleet(home / f"replicas-{replicas}", replicas) as mesh:
            tally, seconds = await load(mesh, replicas)
            report(replicas, tally, seconds, traces_of(mesh, tally.visits))
