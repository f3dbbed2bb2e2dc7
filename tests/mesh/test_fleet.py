"""Two replicas of every service behind their own sidecars (`telemesh up --replicas 2`
on PostgreSQL), through the edge: calls spread over the replicas, a visit's signaling
stays on one, a whole visit works, and a session replica killed during bookings loses
nothing a client was told succeeded."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
import pytest

from telemesh.billing.v1 import billing_pb2, billing_pb2_grpc
from telemesh.clients import VISIT_AFFINITY
from telemesh.config import SERVICES
from telemesh.session.v1 import session_pb2
from telemesh.signaling.v1 import signaling_pb2, signaling_pb2_grpc
from telemesh.timestamps import timestamp
from telemesh_tools.demo.run import Progress, edge_channel_factory, play_visit
from telemesh_tools.demo.steps import VisitSteps
from telemesh_tools.mesh import allowlist
from telemesh_tools.peer.call_peer import CallPeer
from telemesh_tools.stack.endpoints import read_endpoints
from telemesh_tools.stack.envoy import stats
from tests.support.billing import completion
from tests.support.harness import (
    REPO,
    FleetDatabases,
    clean_env,
    cut_pg_connections,
    fleet_databases,
)
from tests.support.mesh import MeshUnderTest
from tests.support.polling import eventually
from tests.support.prometheus import total

pytestmark = pytest.mark.postgres

REPLICAS = 2
BOOKINGS = 200
CLIENTS = 20
KILL_AFTER = 60  # acknowledged bookings before a session replica is killed


@pytest.fixture(scope="module")
def databases() -> Iterator[FleetDatabases]:
    with fleet_databases("fleet") as made:
        yield made


@pytest.fixture(scope="module")
def fleet(
    tmp_path_factory: pytest.TempPathFactory, databases: FleetDatabases
) -> Iterator[MeshUnderTest]:
    """`telemesh up --replicas 2` on PostgreSQL databases of its own."""
    stack = MeshUnderTest.start(tmp_path_factory.mktemp("fleet"), *databases.up_args(REPLICAS))
    try:
        yield stack
    finally:
        stack.close()


def served(replica: dict[str, object], method: str) -> int:
    """How many calls of `method` this replica has answered (its Prometheus endpoint)."""
    count = total(
        str(replica["metrics"]), "rpc_server_duration_milliseconds_count", rpc_method=method
    )
    return int(count)


def replicas_of(fleet: MeshUnderTest, service: str) -> list[dict[str, object]]:
    return list(fleet.endpoints["services"][service]["replicas"])


def steps_through_edge(fleet: MeshUnderTest) -> VisitSteps:
    return VisitSteps(edge_channel_factory(fleet.endpoints), fleet.issuer)


def test_replicas_on_sqlite_are_refused(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "telemesh_tools.cli.main", "up", "--replicas", "2"],
        env=clean_env(tmp_path),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "need PostgreSQL" in done.stderr
    assert "SQLite has one writer" in done.stderr


def test_every_replica_is_listed_with_its_own_sidecar(fleet: MeshUnderTest) -> None:
    for service in SERVICES:
        replicas = replicas_of(fleet, service)
        assert len(replicas) == REPLICAS
        for field in ("socket", "inbound", "sidecar_admin", "metrics", "pid"):
            values = [replica[field] for replica in replicas]
            assert len(set(values)) == REPLICAS, (service, field, values)
        # One workload identity per service, whichever replica answers.
        assert {r["spiffe_id"] for r in replicas} == {
            fleet.endpoints["services"][service]["spiffe_id"]
        }


def test_the_runtime_and_the_mesh_agree_on_affinity() -> None:
    assert dict(allowlist.load().affinity) == VISIT_AFFINITY


async def test_session_calls_spread_over_the_replicas(fleet: MeshUnderTest) -> None:
    steps = steps_through_edge(fleet)
    try:
        clinician_id, md = await steps.clinician()
        before = [served(r, "ListSlots") for r in replicas_of(fleet, "session")]
        start = datetime.now(UTC) + timedelta(hours=1)
        for _ in range(40):
            await steps.session.ListSlots(
                session_pb2.ListSlotsRequest(
                    clinician_id=clinician_id,
                    start_time=timestamp(start),
                    end_time=timestamp(start + timedelta(hours=2)),
                ),
                metadata=md,
            )
        after = [served(r, "ListSlots") for r in replicas_of(fleet, "session")]
    finally:
        await steps.close()
    counts = [a - b for a, b in zip(after, before, strict=True)]
    assert sum(counts) == 40
    assert all(count >= 10 for count in counts), f"round robin over the replicas: {counts}"


async def test_calls_about_one_visit_stay_on_one_signaling_replica(fleet: MeshUnderTest) -> None:
    header = VISIT_AFFINITY["signaling"]
    replicas = replicas_of(fleet, "signaling")
    md = fleet.issuer.mint("p-affinity", "patient")
    landed: Counter[int] = Counter()
    async with edge_channel_factory(fleet.endpoints)("signaling") as channel:
        stub = signaling_pb2_grpc.SignalingServiceStub(channel)
        for n in range(16):
            key = f"visit-{n}-{uuid.uuid4().hex[:6]}"
            before = [served(r, "GetIceServers") for r in replicas]
            for _ in range(4):
                await stub.GetIceServers(
                    signaling_pb2.GetIceServersRequest(),
                    metadata=(("authorization", f"Bearer {md}"), (header, key)),
                )
            after = [served(r, "GetIceServers") for r in replicas]
            counts = [a - b for a, b in zip(after, before, strict=True)]
            assert sorted(counts) == [0, 4], f"the calls about {key} split: {counts}"
            landed[counts.index(4)] += 1
    assert len(landed) == REPLICAS, f"every visit hashed to one replica: {landed}"


async def test_a_whole_visit_with_media_across_the_replicas(fleet: MeshUnderTest) -> None:
    steps = steps_through_edge(fleet)
    lines: list[str] = []
    try:
        summary = await play_visit(steps, Progress(lines.append), call_seconds=3)
    finally:
        await steps.close()
    assert summary.connected_seconds > 0, "\n".join(lines)
    assert summary.procedure_code, "the visit was charged"


async def test_a_session_replica_killed_during_bookings_loses_nothing(
    fleet: MeshUnderTest,
) -> None:
    steps = steps_through_edge(fleet)
    try:
        clinician_id, clinician_md = await steps.clinician()
        patients = [await steps.patient() for _ in range(CLIENTS)]
        first = (datetime.now(UTC) + timedelta(hours=2)).replace(second=0, microsecond=0)
        first -= timedelta(minutes=first.minute % 5)
        requests = [
            session_pb2.BookVisitRequest(
                request_id=str(uuid.uuid4()),
                clinician_id=clinician_id,
                patient_id=patients[n % CLIENTS][0],
                start_time=timestamp(first + timedelta(minutes=5 * n)),
            )
            for n in range(BOOKINGS)
        ]
        acknowledged: dict[str, str] = {}  # request_id -> visit_id
        victim = replicas_of(fleet, "session")[1]
        killed = asyncio.Event()

        async def book(request: session_pb2.BookVisitRequest) -> None:
            md = patients[requests.index(request) % CLIENTS][1]
            for _ in range(20):  # a client retries what did not answer, same request_id
                try:
                    reply = await steps.session.BookVisit(request, metadata=md, timeout=10)
                except grpc.aio.AioRpcError as error:
                    if error.code() in (
                        grpc.StatusCode.UNAVAILABLE,
                        grpc.StatusCode.DEADLINE_EXCEEDED,
                    ):
                        await asyncio.sleep(0.2)
                        continue
                    raise
                acknowledged[request.request_id] = reply.visit.visit_id
                if len(acknowledged) == KILL_AFTER and not killed.is_set():
                    os.kill(int(str(victim["pid"])), signal.SIGKILL)
                    killed.set()
                return
            raise AssertionError(f"booking {request.request_id} never answered")

        queue = list(requests)

        async def client() -> None:
            while queue:
                await book(queue.pop(0))

        edge_admin = int(str(fleet.endpoints["edge"]["admin"]).rsplit(":", 1)[1])
        retried_before = stats(edge_admin, r"^cluster\.session\.upstream_rq_retry$")
        await asyncio.gather(*(client() for _ in range(CLIENTS)))
        assert killed.is_set()
        assert len(acknowledged) == BOOKINGS
        # The edge took the calls the dead replica could not answer to the other one.
        retried = stats(edge_admin, r"^cluster\.session\.upstream_rq_retry$")
        key = "cluster.session.upstream_rq_retry"
        assert retried[key] > retried_before.get(key, 0), retried

        # Every booking a client was told succeeded exists, once; no slot twice.
        listed: list[session_pb2.Visit] = []
        token = ""
        while True:
            page = await steps.session.ListVisits(
                session_pb2.ListVisitsRequest(
                    clinician_id=clinician_id, page_size=100, page_token=token
                ),
                metadata=clinician_md,
            )
            listed.extend(page.visits)
            token = page.next_page_token
            if not token:
                break
        ids = [visit.visit_id for visit in listed]
        assert sorted(ids) == sorted(acknowledged.values())
        starts = Counter(visit.start_time.ToSeconds() for visit in listed)
        assert max(starts.values()) == 1, "a slot was booked twice"
        # A retry of an answered booking gets the same answer.
        for request in requests[:: BOOKINGS // 20]:
            md = patients[requests.index(request) % CLIENTS][1]
            again = await steps.session.BookVisit(request, metadata=md, timeout=10)
            assert again.visit.visit_id == acknowledged[request.request_id]
    finally:
        await steps.close()

    # The killed replica comes back (as a container restarts) and serves again.
    async def back() -> bool:
        current = replicas_of_now(fleet)[1]
        return current["pid"] != victim["pid"] and served(current, "ListSlots") >= 0

    await eventually(back, seconds=60)
    assert "session-1 stopped on its own; restarting it" in fleet.process.logs()


async def test_a_billing_replica_killed_during_completions_charges_each_visit_once(
    fleet: MeshUnderTest,
) -> None:
    # The session service's outbox relay delivers completions through its sidecar; the
    # test delivers them the same way, as the session service, retrying what failed.
    patient_id = f"p-fleet-{uuid.uuid4().hex[:8]}"
    requests = [completion(patient_id=patient_id) for _ in range(BOOKINGS)]
    victim = replicas_of(fleet, "billing")[1]
    answered: dict[str, str] = {}  # visit_id -> charge_id
    killed = asyncio.Event()
    async with grpc.aio.insecure_channel(
        str(fleet.endpoints["services"]["session"]["outbound"])
    ) as channel:
        stub = billing_pb2_grpc.BillingServiceStub(channel)

        async def deliver(request: billing_pb2.RecordVisitCompletionRequest) -> None:
            for _ in range(20):
                try:
                    reply = await stub.RecordVisitCompletion(request, timeout=10)
                except grpc.aio.AioRpcError as error:
                    if error.code() == grpc.StatusCode.UNAVAILABLE:
                        await asyncio.sleep(0.2)
                        continue
                    raise
                answered[request.visit_id] = reply.charge.charge_id
                if len(answered) == KILL_AFTER and not killed.is_set():
                    os.kill(int(str(victim["pid"])), signal.SIGKILL)
                    killed.set()
                return
            raise AssertionError(f"completion of {request.visit_id} never answered")

        queue = list(requests)

        async def relay() -> None:
            while queue:
                await deliver(queue.pop(0))

        await asyncio.gather(*(relay() for _ in range(CLIENTS)))
    assert killed.is_set()
    assert len(answered) == BOOKINGS
    async with edge_channel_factory(fleet.endpoints)("billing") as channel:
        stub = billing_pb2_grpc.BillingServiceStub(channel)
        md = (("authorization", f"Bearer {fleet.issuer.mint('clerk-1', 'billing')}"),)
        charges: list[billing_pb2.Charge] = []
        token = ""
        while True:
            page = await stub.ListCharges(
                billing_pb2.ListChargesRequest(
                    patient_id=patient_id, page_size=100, page_token=token
                ),
                metadata=md,
            )
            charges.extend(page.charges)
            token = page.next_page_token
            if not token:
                break
    ours = [c for c in charges if c.visit_id in answered]
    assert len(ours) == BOOKINGS, "exactly one charge per completed visit"
    assert {c.visit_id: c.charge_id for c in ours} == answered


async def test_cut_database_connections_lose_nothing_and_need_no_restart(
    fleet: MeshUnderTest, databases: FleetDatabases
) -> None:
    steps = steps_through_edge(fleet)
    pids = [r["pid"] for r in replicas_of_now(fleet)]
    try:
        clinician_id, clinician_md = await steps.clinician()
        patient_id, md = await steps.patient()
        first = (datetime.now(UTC) + timedelta(days=2)).replace(second=0, microsecond=0)
        first -= timedelta(minutes=first.minute % 5)
        acknowledged: dict[str, str] = {}
        cuts = 0

        async def book(n: int) -> None:
            request = session_pb2.BookVisitRequest(
                request_id=str(uuid.uuid4()),
                clinician_id=clinician_id,
                patient_id=patient_id,
                start_time=timestamp(first + timedelta(minutes=5 * n)),
            )
            for _ in range(30):
                try:
                    reply = await steps.session.BookVisit(request, metadata=md, timeout=10)
                except grpc.aio.AioRpcError as error:
                    if error.code() != grpc.StatusCode.UNAVAILABLE:
                        raise  # only "retry" is an acceptable answer to a cut
                    await asyncio.sleep(0.2)
                    continue
                acknowledged[request.request_id] = reply.visit.visit_id
                return
            raise AssertionError("a booking never answered")

        async def cutter() -> None:
            nonlocal cuts
            for _ in range(3):
                await asyncio.sleep(0.3)
                cuts += await asyncio.to_thread(cut_pg_connections, databases.of("session"))

        queue = list(range(100))

        async def client() -> None:
            while queue:
                await book(queue.pop(0))

        await asyncio.gather(cutter(), *(client() for _ in range(10)))
        assert cuts > 0, "no connection was cut: nothing was tested"
        assert len(acknowledged) == 100
        listed = await steps.session.ListVisits(
            session_pb2.ListVisitsRequest(clinician_id=clinician_id, page_size=200),
            metadata=clinician_md,
        )
        assert sorted(v.visit_id for v in listed.visits) == sorted(acknowledged.values())
    finally:
        await steps.close()
    assert [r["pid"] for r in replicas_of_now(fleet)] == pids, "no replica was restarted"


async def test_the_signaling_replica_of_a_live_call_is_killed_and_the_call_goes_on(
    fleet: MeshUnderTest,
) -> None:
    steps = steps_through_edge(fleet)
    channel = edge_channel_factory(fleet.endpoints)("signaling")
    stub = signaling_pb2_grpc.SignalingServiceStub(channel)
    replicas = replicas_of(fleet, "signaling")
    try:
        visit = await steps.ready_visit()
        before = [served(r, "AdmitPatient") for r in replicas]
        patient = CallPeer(
            stub, visit.patient, await steps.join_token(visit, "patient"), label="patient"
        )
        clinician = CallPeer(
            stub, visit.clinician, await steps.join_token(visit, "clinician"), label="clinician"
        )
        try:
            await patient.join()
            await clinician.join()
            await clinician.admit()
            for peer in (patient, clinician):
                await peer.wait_connected()
                await peer.wait_frames(5)
            # The room lives where the visit's affinity header hashes, its streams and its
            # calls too: the replica that answered the admission.
            home = next(
                r for r, b in zip(replicas, before, strict=True) if served(r, "AdmitPatient") > b
            )
            generations = {peer: peer.generation for peer in (patient, clinician)}
            os.kill(int(str(home["pid"])), signal.SIGKILL)

            async def media_again(peer: CallPeer) -> None:
                await peer.wait_for(lambda: peer.generation > generations[peer] and peer.connected)
                await peer.wait_frames(1, generation=peer.generation)

            try:
                await asyncio.wait_for(
                    asyncio.gather(media_again(patient), media_again(clinician)), 5.0
                )
            except TimeoutError:
                raise AssertionError(f"{patient.describe()}\n{clinician.describe()}") from None
            assert patient.joins[-1].resume_gap, "a surviving replica took the room over"
            assert patient.admitted, "admission survived the replica"

            # The killed replica comes back (as a container restarts); the call's messages
            # still reach the other side: an ICE restart goes through.
            async def home_back() -> bool:
                endpoints = read_endpoints(fleet.home) or {}
                current = next(
                    r
                    for r in endpoints["services"]["signaling"]["replicas"]
                    if r["name"] == home["name"]
                )
                if current["pid"] == home["pid"]:
                    return False
                try:
                    served(current, "JoinRoom")  # it answers: it is serving again
                except OSError:
                    return False
                return True

            await eventually(home_back, seconds=30)
            generations = {peer: peer.generation for peer in (patient, clinician)}
            await clinician.restart_ice()
            try:
                await asyncio.wait_for(
                    asyncio.gather(media_again(patient), media_again(clinician)), 10.0
                )
            except TimeoutError:
                raise AssertionError(f"{patient.describe()}\n{clinician.describe()}") from None
        finally:
            await patient.close()
            await clinician.close()
        done = await steps.complete(visit)
        assert len(done.connected_periods) >= 1
        assert done.connected_seconds >= 0
        billing = billing_pb2_grpc.BillingServiceStub(steps.channel("billing"))

        async def charged_once() -> bool:
            reply = await billing.ListCharges(
                billing_pb2.ListChargesRequest(
                    patient_id=visit.patient_id, visit_id=visit.visit_id
                ),
                metadata=visit.patient,
            )
            assert len(reply.charges) <= 1
            return len(reply.charges) == 1

        await eventually(charged_once, seconds=30)
    finally:
        await channel.close()
        await steps.close()


def replicas_of_now(fleet: MeshUnderTest) -> list[dict[str, object]]:
    """The session replicas as `telemesh up` lists them now (a restart changes a pid)."""
    endpoints = read_endpoints(fleet.home) or {}
    return list(endpoints["services"]["session"]["replicas"])
