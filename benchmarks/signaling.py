"""Signaling: relay latency, memory per room, and call set-up time, side by side.

- Relay latency: 100 active rooms; in each the patient sends an offer (a real aiortc
  SDP) and we time it until the clinician's JoinRoom stream yields it; p50/p99. The
  same scenario runs over a minimal `websockets` relay (benchmarks/ws_relay.py) in the
  same run: the ratio is signaling's p50 and p99 to the relay's.
- Memory: 1,000 rooms with both participants' streams open (2,000 streams) on one
  signaling process; its resident memory after one warm-up room, and after the rest.
- Call set-up: two aiortc peers (telemesh_tools.peer.CallPeer) from "both joined and admitted"
  to both ICE-connected through the service, as a ratio to the same two peers
  exchanging SDP directly in one process.
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
import random
import statistics
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import grpc
from aiortc import RTCPeerConnection
from websockets.asyncio.client import ClientConnection, connect

from benchmarks.harness import REPO, percentile, profiled
from telemesh.signaling.v1 import signaling_pb2, signaling_pb2_grpc
from telemesh.webrtc.ice import enable_loopback_ice
from telemesh.webrtc.media import SyntheticVideoTrack
from telemesh_tools.peer.call_peer import CallPeer
from telemesh_tools.stack.process import ManagedProcess, free_port, tcp_probe
from tests.support.flows import Flows, Visit, rid
from tests.support.harness import Stack

RELAY_ROOMS = 100
MEMORY_ROOMS = 1_000
RELAY_SECONDS = 5.0
# Pauses between a room's offers: about one a second (already far more than calls
# send: a few messages at set-up, then quality reports), and five a second.
PAUSES = (1.0, 0.2)
SETUP_CALLS = 5
T = TypeVar("T")


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def bounded(items: list[Callable[[], Awaitable[T]]], limit: int = 16) -> list[T]:
    gate = asyncio.Semaphore(limit)

    async def one(make: Callable[[], Awaitable[T]]) -> T:
        async with gate:
            return await make()

    return await asyncio.gather(*(one(make) for make in items))


async def sample_offer() -> str:
    pc = RTCPeerConnection()
    pc.addTrack(SyntheticVideoTrack())
    pc.createDataChannel("chat", negotiated=True, id=0)
    await pc.setLocalDescription(await pc.createOffer())
    sdp: str = pc.localDescription.sdp
    await pc.close()
    return sdp


# --- rooms through the real services ------------------------------------------------


class Room:
    """A visit's room with both participants' streams open."""

    def __init__(self, visit: Visit, patient_token: str, clinician_token: str) -> None:
        self.visit = visit
        self.tokens = {"patient": patient_token, "clinician": clinician_token}
        self.room_id = ""
        self.received: asyncio.Queue[float] = asyncio.Queue()
        self.calls: list[grpc.aio.UnaryStreamCall[object, object]] = []
        self.tasks: list[asyncio.Task[None]] = []

    async def join(self, stub: signaling_pb2_grpc.SignalingServiceAsyncStub) -> None:
        joined = asyncio.Event()
        for role in ("patient", "clinician"):
            metadata = self.visit.patient if role == "patient" else self.visit.clinician
            call = stub.JoinRoom(
                signaling_pb2.JoinRoomRequest(join_token=self.tokens[role]), metadata=metadata
            )
            self.calls.append(call)  # type: ignore[arg-type]
            self.tasks.append(asyncio.create_task(self._read(call, role, joined)))
            await joined.wait()
            joined.clear()

    async def _read(self, call: object, role: str, joined: asyncio.Event) -> None:
        try:
            async for event in call:  # type: ignore[attr-defined]
                kind = event.WhichOneof("event")
                if kind == "joined":
                    self.room_id = event.joined.room_id
                    joined.set()
                elif kind == "session_description" and role == "clinician":
                    self.received.put_nowait(time.perf_counter())
        except grpc.aio.AioRpcError:
            pass

    def close(self) -> None:
        for call in self.calls:
            call.cancel()


async def make_rooms(flows: Flows, count: int) -> list[Room]:
    async def one() -> Room:
        try:
            visit = await flows.ready_visit()
        except grpc.aio.AioRpcError:
            # The next slot may start while we book it (flows picks the next one): again.
            visit = await flows.ready_visit()
        return Room(
            visit,
            await flows.join_token(visit, "patient"),
            await flows.join_token(visit, "clinician"),
        )

    return await bounded([one for _ in range(count)])


def stubs(
    stack: Stack, count: int
) -> tuple[list[grpc.aio.Channel], list[signaling_pb2_grpc.SignalingServiceAsyncStub]]:
    channels = [stack.channel("signaling") for _ in range(count)]
    return channels, [signaling_pb2_grpc.SignalingServiceStub(c) for c in channels]


async def relay_over_grpc(stack: Stack, rooms: list[Room], offer: str) -> dict[float, list[float]]:
    channels, stub_list = stubs(stack, 4)
    try:
        for index, room in enumerate(rooms):
            await room.join(stub_list[index % len(stub_list)])

        async def admit(index: int) -> None:
            room = rooms[index]
            await stub_list[index % len(stub_list)].AdmitPatient(
                signaling_pb2.AdmitPatientRequest(request_id=rid(), room_id=room.room_id),
                metadata=room.visit.clinician,
            )

        await bounded([functools.partial(admit, i) for i in range(len(rooms))])
        description = signaling_pb2.SessionDescription(type=signaling_pb2.SDP_TYPE_OFFER, sdp=offer)
        latencies: list[float] = []
        stop_at = 0.0
        pause = 0.0

        async def loop(index: int, room: Room) -> None:
            stub = stub_list[index % len(stub_list)]
            await asyncio.sleep(random.uniform(0, pause))  # rooms are independent
            while time.perf_counter() < stop_at:
                began = time.perf_counter()
                await stub.SendSessionDescription(
                    signaling_pb2.SendSessionDescriptionRequest(
                        request_id=rid(), room_id=room.room_id, description=description
                    ),
                    metadata=room.visit.patient,
                )
                arrived = await room.received.get()
                latencies.append((arrived - began) * 1000)
                await asyncio.sleep(pause * random.uniform(0.5, 1.5))

        results: dict[float, list[float]] = {}
        for pause in PAUSES:
            latencies = []
            stop_at = time.perf_counter() + RELAY_SECONDS
            with profiled(stack["signaling"].pid, f"signaling-relay-{pause:g}s", RELAY_SECONDS):
                await asyncio.gather(*(loop(i, room) for i, room in enumerate(rooms)))
            results[pause] = latencies
        return results
    finally:
        for room in rooms:
            room.close()
        for channel in channels:
            await channel.close()


async def relay_over_websockets(home: Path, offer: str) -> dict[float, list[float]]:
    port = free_port()
    server = ManagedProcess(
        "ws_relay",
        [str(REPO / ".venv/bin/python"), "-m", "benchmarks.ws_relay", str(port)],
        dict(os.environ),
        home / "ws_relay.log",
        cwd=REPO,
        ready=tcp_probe(port),
    )
    server.start().wait_ready()
    message = json.dumps({"type": "offer", "sdp": offer})
    try:
        pairs: list[tuple[ClientConnection, ClientConnection]] = []
        for index in range(RELAY_ROOMS):
            patient = await connect(f"ws://127.0.0.1:{port}/room-{index}/patient", compression=None)
            clinician = await connect(
                f"ws://127.0.0.1:{port}/room-{index}/clinician", compression=None
            )
            pairs.append((patient, clinician))
        latencies: list[float] = []
        stop_at = 0.0
        pause = 0.0

        async def loop(patient: ClientConnection, clinician: ClientConnection) -> None:
            await asyncio.sleep(random.uniform(0, pause))  # rooms are independent
            while time.perf_counter() < stop_at:
                began = time.perf_counter()
                await patient.send(message)
                json.loads(await clinician.recv())
                latencies.append((time.perf_counter() - began) * 1000)
                await asyncio.sleep(pause * random.uniform(0.5, 1.5))

        results: dict[float, list[float]] = {}
        for pause in PAUSES:
            latencies = []
            stop_at = time.perf_counter() + RELAY_SECONDS
            await asyncio.gather(*(loop(p, c) for p, c in pairs))
            results[pause] = latencies
        for patient, clinician in pairs:
            await patient.close()
            await clinician.close()
        return results
    finally:
        server.stop()


# --- memory ---------------------------------------------------------------------------


async def memory_of_rooms(stack: Stack, flows: Flows) -> tuple[float, float]:
    warm_up, *rooms = await make_rooms(flows, MEMORY_ROOMS + 1)
    # A fresh process, so that earlier suites' rooms and buffers do not count.
    await asyncio.to_thread(stack["signaling"].restart)
    channels, stub_list = stubs(stack, 10)
    try:
        # One room first: what the first join loads once (join-token keys, consent's
        # channel, caches) is not memory per room.
        await warm_up.join(stub_list[0])
        await asyncio.sleep(1.0)
        pid = stack["signaling"].pid
        before = rss_mib(pid)
        await bounded(
            [functools.partial(room.join, stub_list[i % 10]) for i, room in enumerate(rooms)],
            limit=50,
        )
        await asyncio.sleep(1.0)
        return before, rss_mib(pid)
    finally:
        for room in (warm_up, *rooms):
            room.close()
        for channel in channels:
            await channel.close()


# --- call set-up ----------------------------------------------------------------------


async def setup_through_signaling(stack: Stack, flows: Flows) -> list[float]:
    times: list[float] = []
    channel = stack.channel("signaling")
    stub = signaling_pb2_grpc.SignalingServiceStub(channel)
    try:
        for _ in range(SETUP_CALLS):
            visit = await flows.ready_visit()
            # Negotiation starts by hand, so that none of it runs before the timer does.
            patient = CallPeer(
                stub,
                visit.patient,
                await flows.join_token(visit, "patient"),
                auto_negotiate=False,
            )
            clinician = CallPeer(
                stub,
                visit.clinician,
                await flows.join_token(visit, "clinician"),
                label="c",
                auto_negotiate=False,
            )
            try:
                await patient.join()
                await clinician.join()
                await clinician.admit()
                for peer in (patient, clinician):
                    await peer.wait_for(lambda peer=peer: peer.admitted and peer.peer_present)
                began = time.perf_counter()
                await clinician.negotiate()  # the impolite side offers, as on a first call
                await patient.wait_connected()
                await clinician.wait_connected()
                times.append((time.perf_counter() - began) * 1000)
            finally:
                await patient.close()
                await clinician.close()
    finally:
        await channel.close()
    return times


def _peer_like_call_peer(pc: RTCPeerConnection) -> asyncio.Event:
    """The same media as CallPeer; the event is set when the connection is up."""
    connected = asyncio.Event()
    pc.addTrack(SyntheticVideoTrack())
    pc.createDataChannel("chat", negotiated=True, id=0)

    @pc.on("connectionstatechange")
    def on_state() -> None:
        if pc.connectionState == "connected":
            connected.set()

    return connected


async def setup_direct() -> list[float]:
    times: list[float] = []
    for _ in range(SETUP_CALLS):
        a, b = RTCPeerConnection(), RTCPeerConnection()
        connected = {a: _peer_like_call_peer(a), b: _peer_like_call_peer(b)}

        try:
            began = time.perf_counter()
            await a.setLocalDescription(await a.createOffer())
            await b.setRemoteDescription(a.localDescription)
            await b.setLocalDescription(await b.createAnswer())
            await a.setRemoteDescription(b.localDescription)
            await connected[a].wait()
            await connected[b].wait()
            times.append((time.perf_counter() - began) * 1000)
        finally:
            await a.close()
            await b.close()
    return times


def _line(name: str, samples: list[float]) -> str:
    return (
        f"  {name:<44} n={len(samples):>5}  p50 {percentile(samples, 0.5):>7.2f} ms"
        f"  p99 {percentile(samples, 0.99):>7.2f} ms"
    )


async def run(home: Path) -> None:
    enable_loopback_ice()
    stack = Stack(home / "stack", "sqlite", {"TELEMESH_ICE_LOOPBACK": "1"})
    stack.start("consent", "session", "signaling")
    flows = Flows(stack)
    try:
        offer = await sample_offer()
        print(
            f"relay latency, {RELAY_ROOMS} active rooms, an offer of {len(offer)} bytes sent"
            " until the other peer's stream yields it (closed loop per room)"
        )
        ws_all = await relay_over_websockets(home, offer)
        rooms = await make_rooms(flows, RELAY_ROOMS)
        grpc_all = await relay_over_grpc(stack, rooms, offer)
        for pause in PAUSES:
            ws, relayed = ws_all[pause], grpc_all[pause]
            print(f" one offer per room every {pause}s")
            print(_line("websockets relay (baseline)", ws))
            print(_line("SignalingService (unary up, stream down)", relayed))
            print(
                f"  ratio to websockets: p50 x{percentile(relayed, 0.5) / percentile(ws, 0.5):.2f}"
                f"  p99 x{percentile(relayed, 0.99) / percentile(ws, 0.99):.2f}"
            )

        direct = await setup_direct()
        through = await setup_through_signaling(stack, flows)
        print("call set-up, aiortc peers, both joined and admitted -> both ICE-connected")
        print(_line("direct SDP exchange in one process (baseline)", direct))
        print(_line("through SignalingService", through))
        print(f"  ratio (median): x{statistics.median(through) / statistics.median(direct):.2f}")

        before, after = await memory_of_rooms(stack, flows)
        print(f"memory, {MEMORY_ROOMS} rooms with {2 * MEMORY_ROOMS} open streams, one process")
        print(
            f"  signaling RSS {before:.0f} MiB before, {after:.0f} MiB with the rooms:"
            f" {(after - before) * 1024 / MEMORY_ROOMS:.1f} KiB per room, {after:.0f} MiB in all"
        )
    finally:
        await flows.close()
        stack.close()
