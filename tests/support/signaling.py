"""What the signaling and security tests share: a stack with a real coturn, visits
ready to join, and pairs of real aiortc peers that always get closed."""

from __future__ import annotations

import contextlib
import secrets
import shutil
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest

from telemesh.signaling.v1 import signaling_pb2_grpc
from telemesh.webrtc.ice import enable_loopback_ice
from telemesh_tools.peer.call_peer import CallPeer
from telemesh_tools.stack.process import ManagedProcess, free_port, tcp_probe
from tests.support.flows import Flows, Visit
from tests.support.harness import Stack

TURN_SECRET = secrets.token_hex(16)
# Channel options of a client that comes back quickly after the service restarts
# (gRPC's default reconnect backoff starts at 1 s and grows).
FAST_RECONNECT = (
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 500),
)


def coturn(home: Path) -> ManagedProcess:
    """coturn on loopback with the shared-secret scheme (`use-auth-secret`)."""
    binary = shutil.which("turnserver")
    if binary is None:
        pytest.fail("coturn is missing: apt-get install coturn (scripts/debian-packages.txt)")
    port = free_port()
    folder = home / "coturn"
    folder.mkdir(parents=True, exist_ok=True)
    process = ManagedProcess(
        "coturn",
        [
            binary,
            "-n",  # no configuration file: everything is on this line
            "--listening-ip=127.0.0.1",
            "--relay-ip=127.0.0.1",
            f"--listening-port={port}",
            "--use-auth-secret",
            f"--static-auth-secret={TURN_SECRET}",
            "--realm=telemesh.test",
            "--allow-loopback-peers",  # both peers are on this machine
            "--no-tls",
            "--no-dtls",
            "--no-cli",
            f"--userdb={folder / 'turndb'}",
            f"--pidfile={folder / 'turnserver.pid'}",
            "--log-file=stdout",
            "--simple-log",
        ],
        {},
        folder / "coturn.log",
        ready=tcp_probe(port),
    )
    process.port = port  # type: ignore[attr-defined]
    return process


@dataclass
class SignalingStack:
    stack: Stack
    turn: ManagedProcess
    turn_port: int

    @property
    def home(self) -> Path:
        return self.stack.home


@contextlib.contextmanager
def signaling_stack(home: Path, backend: str = "sqlite", **env: str) -> Iterator[SignalingStack]:
    """session, consent and signaling processes, and a coturn, for a test module."""
    turn = coturn(home)
    turn.start().wait_ready()
    port: int = turn.port  # type: ignore[attr-defined]
    stack = Stack(
        home,
        backend,
        {
            "TELEMESH_ICE_LOOPBACK": "1",
            "TELEMESH_SIGNALING_PRECALL_ALLOW_LOOPBACK": "1",  # the callers are on this machine
            "TELEMESH_SIGNALING_STUN_URLS": f"stun:127.0.0.1:{port}",
            "TELEMESH_SIGNALING_TURN_URLS": f"turn:127.0.0.1:{port}?transport=udp",
            "TELEMESH_SIGNALING_TURN_SECRET": TURN_SECRET,
            "TELEMESH_SIGNALING_TURN_TTL_SECONDS": "600",
            "TELEMESH_SIGNALING_RECONNECT_GRACE_SECONDS": "5",
            **env,
        },
    )
    enable_loopback_ice()  # the peers in this test process
    try:
        stack.start("consent", "session", "signaling")
        yield SignalingStack(stack, turn, port)
    finally:
        enable_loopback_ice(False)
        stack.close()
        turn.stop()


def signaling_stub(channel: grpc.aio.Channel) -> signaling_pb2_grpc.SignalingServiceAsyncStub:
    return signaling_pb2_grpc.SignalingServiceStub(channel)


@dataclass
class Call:
    visit: Visit
    patient: CallPeer
    clinician: CallPeer


@contextlib.asynccontextmanager
async def call(
    flows: Flows,
    channel: grpc.aio.Channel,
    *,
    relay_only: bool = False,
    auto_negotiate: bool = True,
    visit: Visit | None = None,
) -> AsyncIterator[Call]:
    """A ready visit and its two peers (not joined yet); closes both at the end."""
    visit = visit or await flows.ready_visit()
    stub = signaling_stub(channel)
    patient = CallPeer(
        stub,
        visit.patient,
        await flows.join_token(visit, "patient"),
        label="patient",
        relay_only=relay_only,
        auto_negotiate=auto_negotiate,
    )
    clinician = CallPeer(
        stub,
        visit.clinician,
        await flows.join_token(visit, "clinician"),
        label="clinician",
        relay_only=relay_only,
        auto_negotiate=auto_negotiate,
    )
    try:
        yield Call(visit, patient, clinician)
    finally:
        await patient.close()
        await clinician.close()


async def connected_call(call: Call) -> None:
    """Both join, the clinician admits, and media and data flow both ways."""
    await call.patient.join()
    await call.clinician.join()
    await call.clinician.admit()
    try:
        for peer in (call.patient, call.clinician):
            await peer.wait_connected()
            await peer.wait_frames(5)
            await peer.wait_message()
    except TimeoutError:
        raise AssertionError(f"{call.patient.describe()}\n{call.clinician.describe()}") from None
