"""Issue 12, finding 5: pre-call checks can be neither monopolised nor aimed.

A user runs one check at a time and the pool is bounded for everyone; the echo peer
sends connectivity checks only to allowed addresses. Real signaling processes, real
aiortc offers, and a UDP socket on 127.0.0.1 that shows whether any STUN binding
request reached it.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from aioice import stun
from aiortc import MediaStreamTrack, RTCPeerConnection, RTCSessionDescription
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from svc_signaling.candidate_filter import allowed_address, filter_offer
from telemesh.signaling.v1 import signaling_pb2, signaling_pb2_grpc
from telemesh.webrtc.ice import enable_loopback_ice
from telemesh.webrtc.media import SyntheticVideoTrack, count_frames
from tests.support.flows import Metadata, rid
from tests.support.harness import Stack
from tests.support.polling import eventually

S = signaling_pb2
POOL = 3  # TELEMESH_SIGNALING_MAX_PRECALL_CHECKS of these services
# What an offer may name besides the caller's own candidate: none of it may be checked.
FORBIDDEN = (
    "10.1.2.3",  # RFC 1918
    "192.168.7.7",  # RFC 1918
    "169.254.10.10",  # link-local
    "fd00::7",  # RFC 4193 (ULA)
    "fe80::7",  # link-local
    "224.0.0.251",  # multicast
    "0.0.0.0",  # unspecified
    "0123abcd-0000-4000-8000-0123456789ab.local",  # mDNS
)


# --- the address policy -------------------------------------------------------------


@pytest.mark.parametrize(
    ("host", "off", "on"),
    [
        ("8.8.8.8", True, True),
        ("2001:4860:4860::8888", True, True),
        ("127.0.0.1", False, True),
        ("127.8.9.10", False, True),
        ("::1", False, True),
        ("10.0.0.1", False, False),
        ("172.16.5.4", False, False),
        ("192.168.1.1", False, False),
        ("100.64.0.1", False, False),  # shared address space (carrier NAT)
        ("169.254.169.254", False, False),  # link-local: cloud metadata services
        ("fd12:3456::1", False, False),
        ("fe80::1", False, False),
        ("0.0.0.0", False, False),
        ("::", False, False),
        ("255.255.255.255", False, False),
        ("224.0.0.1", False, False),
        ("ff0e::1", False, False),  # global-scope multicast is still multicast
        ("192.0.2.1", False, False),  # documentation
        ("198.18.0.1", False, False),  # benchmarking
        ("240.0.0.1", False, False),  # reserved
        ("::ffff:127.0.0.1", False, False),  # IPv4-mapped loopback
        ("::ffff:10.0.0.1", False, False),  # IPv4-mapped private
        ("64:ff9b::a00:1", False, False),  # NAT64 of 10.0.0.1
        ("2002:a00:1::1", False, False),  # 6to4 of 10.0.0.1
        ("host.local", False, False),  # mDNS: resolved too late to check
        ("turn.example.org", False, False),  # any other name
    ],
)
def test_only_globally_routable_unicast_addresses_are_checked(
    host: str, off: bool, on: bool
) -> None:
    assert allowed_address(host, allow_loopback=False) is off
    assert allowed_address(host, allow_loopback=True) is on


def test_the_filter_keeps_allowed_candidates_and_ends_every_media_section() -> None:
    sdp = "\r\n".join(
        [
            "v=0",
            "o=- 1 1 IN IP4 0.0.0.0",
            "m=audio 9 UDP/TLS/RTP/SAVPF 0",
            "a=candidate:1 1 udp 2130706431 8.8.8.8 4000 typ srflx raddr 10.0.0.2 rport 5",
            "a=candidate:2 1 udp 2130706431 10.0.0.2 5000 typ host",
            "a=candidate:3 1 udp 2130706431 x.local 5000 typ host",
            "a=candidate:broken",
            "a=end-of-candidates",
            "m=video 9 UDP/TLS/RTP/SAVPF 96",
            "a=candidate:4 1 udp 2130706431 127.0.0.1 6000 typ host",
            "",
        ]
    )
    filtered, dropped = filter_offer(sdp, allow_loopback=False)
    lines = filtered.split("\r\n")
    assert dropped == 4
    assert [line for line in lines if line.startswith("a=candidate:")] == [
        "a=candidate:1 1 udp 2130706431 8.8.8.8 4000 typ srflx raddr 10.0.0.2 rport 5"
    ]
    assert lines.count("a=end-of-candidates") == 2
    assert lines.index("a=end-of-candidates") < lines.index("m=video 9 UDP/TLS/RTP/SAVPF 96")
    _, dropped = filter_offer(sdp, allow_loopback=True)
    assert dropped == 3


# --- real echo peers ----------------------------------------------------------------


@dataclass
class EchoService:
    stack: Stack
    stub: signaling_pb2_grpc.SignalingServiceAsyncStub

    def user(self, subject: str) -> Metadata:
        return self.stack.tokens.patient(subject)


@contextlib.contextmanager
def _signaling(home: Path, allow_loopback: bool) -> Iterator[Stack]:
    """A signaling process alone (pre-call checks need nothing else)."""
    stack = Stack(
        home,
        "sqlite",
        {
            "TELEMESH_ICE_LOOPBACK": "1",  # the echo peer gathers 127.0.0.1, as the caller
            "TELEMESH_SIGNALING_PRECALL_ALLOW_LOOPBACK": "1" if allow_loopback else "0",
            "TELEMESH_SIGNALING_MAX_PRECALL_CHECKS": str(POOL),
            "TELEMESH_SIGNALING_PRECALL_SECONDS": "1",
            # Long enough that a check nobody answers is still running while the test
            # makes its next few calls; it ends early when ICE has nothing to try.
            "TELEMESH_SIGNALING_PRECALL_CONNECT_TIMEOUT_SECONDS": "6",
            "TELEMESH_SIGNALING_CONSENT_WATCH": "0",
        },
    )
    try:
        yield stack.start("signaling")
    finally:
        stack.close()


@pytest.fixture(scope="module")
def stacks(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[bool, Stack]]:
    """Two signaling services: the one-machine loopback mode on (True) and off (False)."""
    enable_loopback_ice()  # the callers in this process gather 127.0.0.1
    try:
        with (
            _signaling(tmp_path_factory.mktemp("on"), True) as on,
            _signaling(tmp_path_factory.mktemp("off"), False) as off,
        ):
            yield {True: on, False: off}
    finally:
        enable_loopback_ice(False)


@contextlib.asynccontextmanager
async def echo_service(stacks: dict[bool, Stack], loopback: bool) -> AsyncIterator[EchoService]:
    channel = stacks[loopback].channel("signaling")
    try:
        yield EchoService(stacks[loopback], signaling_pb2_grpc.SignalingServiceStub(channel))
    finally:
        await channel.close()


class Bait(asyncio.DatagramProtocol):
    """A UDP socket on 127.0.0.1 that records the STUN binding requests it receives."""

    def __init__(self) -> None:
        self.requests = 0
        self.port = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.port = int(transport.get_extra_info("sockname")[1])

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        with contextlib.suppress(ValueError):
            message = stun.parse_message(data)
            if (message.message_method, message.message_class) == (
                stun.Method.BINDING,
                stun.Class.REQUEST,
            ):
                self.requests += 1


@contextlib.asynccontextmanager
async def bait() -> AsyncIterator[Bait]:
    loop = asyncio.get_running_loop()
    transport, protocol = await loop.create_datagram_endpoint(
        Bait, local_addr=("127.0.0.1", 0), family=socket.AF_INET
    )
    try:
        yield protocol
    finally:
        transport.close()


def with_candidates(sdp: str, hosts: list[tuple[str, int]], *, keep_own: bool = True) -> str:
    """The offer with extra host candidates in every media section (and without the
    caller's own when `keep_own` is False)."""
    lines: list[str] = []
    for line in sdp.splitlines():
        if line.startswith("a=candidate:") and not keep_own:
            continue
        if line == "a=end-of-candidates":
            continue
        lines.append(line)
        if line.startswith("m="):
            lines.extend(
                f"a=candidate:b{n} 1 udp 2130706431 {host} {port} typ host"
                for n, (host, port) in enumerate(hosts)
            )
    return "\r\n".join(lines) + "\r\n"


@contextlib.asynccontextmanager
async def caller() -> AsyncIterator[RTCPeerConnection]:
    """An aiortc caller with synthetic video and its offer made; closed at the end."""
    pc = RTCPeerConnection()
    try:
        pc.addTrack(SyntheticVideoTrack())
        await pc.setLocalDescription(await pc.createOffer())
        yield pc
    finally:
        await pc.close()


async def start(
    echo: EchoService, who: Metadata, sdp: str, request_id: str | None = None
) -> S.StartPreCallCheckResponse:
    return await echo.stub.StartPreCallCheck(
        S.StartPreCallCheckRequest(
            request_id=request_id or rid(),
            offer=S.SessionDescription(type=S.SDP_TYPE_OFFER, sdp=sdp),
        ),
        metadata=who,
    )


async def final_state(echo: EchoService, who: Metadata, check_id: str) -> S.GetPreCallCheckResponse:
    async def done() -> bool:
        reply = await echo.stub.GetPreCallCheck(
            S.GetPreCallCheckRequest(check_id=check_id), metadata=who
        )
        return bool(reply.state != S.PRE_CALL_CHECK_STATE_RUNNING)

    await eventually(done, 30.0, 0.1)
    return await echo.stub.GetPreCallCheck(
        S.GetPreCallCheckRequest(check_id=check_id), metadata=who
    )


def error_info(error: grpc.aio.AioRpcError) -> error_details_pb2.ErrorInfo:
    status = rpc_status.from_call(error)
    assert status is not None, error
    for detail in status.details:
        info = error_details_pb2.ErrorInfo()
        if detail.Unpack(info):
            return info
    raise AssertionError(f"no ErrorInfo in {error}")


async def refused_start(
    echo: EchoService, who: Metadata, sdp: str
) -> tuple[grpc.StatusCode, error_details_pb2.ErrorInfo]:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await start(echo, who, sdp)
    return caught.value.code(), error_info(caught.value)


async def test_one_check_per_user_and_a_bounded_pool_nobody_can_hold(
    stacks: dict[bool, Stack],
) -> None:
    async with echo_service(stacks, loopback=True) as echo, bait() as silent, caller() as pc:
        # An offer whose only candidate never answers: its check stays running until
        # the connect timeout, holding one slot.
        holding = with_candidates(
            pc.localDescription.sdp, [("127.0.0.1", silent.port)], keep_own=False
        )
        first_user = echo.user("p-first")
        first_request = rid()
        first = await start(echo, first_user, holding, first_request)

        # The same user again, at once: refused, and told which check is theirs.
        code, info = await refused_start(echo, first_user, holding)
        assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert info.reason == "PRECALL_ALREADY_RUNNING"
        assert info.metadata["check_id"] == first.check_id
        # A retry of the first request is not a second check: it gets the first answer.
        again = await start(echo, first_user, holding, first_request)
        assert again.check_id == first.check_id

        # Others fill the rest of the pool; one more is turned away.
        for n in range(POOL - 1):
            await start(echo, echo.user(f"p-other-{n}"), holding)
        code, info = await refused_start(echo, echo.user("p-late"), holding)
        assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert info.reason == "PRECALL_BUSY"

        # Once the first check is over, its slot is free again for the same user.
        result = await final_state(echo, first_user, first.check_id)
        assert result.state == S.PRE_CALL_CHECK_STATE_FAILED
        assert silent.requests > 0, "the echo peer tried the allowed loopback candidate"
        await start(echo, first_user, holding)


@pytest.mark.parametrize("loopback", [False, True], ids=["loopback-off", "loopback-on"])
async def test_the_echo_peer_never_checks_a_forbidden_address(
    stacks: dict[bool, Stack], loopback: bool
) -> None:
    async with echo_service(stacks, loopback) as echo, bait() as watched, caller() as pc:
        echoed = 0

        @pc.on("track")
        def on_track(track: MediaStreamTrack) -> None:
            def on_frame() -> None:
                nonlocal echoed
                echoed += 1

            count_frames(track, on_frame)

        # The caller's own loopback candidate, a loopback port of ours that must never
        # see a binding request unless loopback is allowed, and private, link-local,
        # multicast, unspecified and mDNS targets that must never be tried at all.
        targets = [("127.0.0.1", watched.port), *((host, 9) for host in FORBIDDEN)]
        offer = with_candidates(pc.localDescription.sdp, targets)
        who = echo.user(f"p-aim-{loopback}")
        started = await start(echo, who, offer)
        await pc.setRemoteDescription(RTCSessionDescription(started.answer.sdp, "answer"))
        result = await final_state(echo, who, started.check_id)
        if loopback:
            # As before the fix on one machine: the caller's candidate works, and the
            # watched port (allowed here) is tried, so the test below could fail.
            assert result.state == S.PRE_CALL_CHECK_STATE_SUCCEEDED
            assert result.frames_received > 0
            assert echoed > 0
            assert watched.requests > 0
        else:
            # No request reached the port, and with nothing to try the check fails cleanly.
            assert watched.requests == 0
            assert result.state == S.PRE_CALL_CHECK_STATE_FAILED
            assert echoed == 0
        own = sum(1 for line in pc.localDescription.sdp.splitlines() if "a=candidate:" in line)
        refused = len(FORBIDDEN) + (0 if loopback else own + 1)
        assert f'"refused": {refused}' in echo.stack.logs(), "the echo peer's own count"
