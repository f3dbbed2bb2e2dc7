"""`CallPeer`: one participant of a video visit, as an aiortc peer behind the signaling
service's generated client.

Perfect negotiation (the clinician impolite, the patient polite, as the room says in
`joined`): both sides may offer when negotiation is needed; on glare the impolite side
ignores the incoming offer and the polite side gives up its own and answers.

aiortc has neither rollback nor `restartIce()`, so this peer does what they would do by
replacing its RTCPeerConnection: a polite peer in glare, and any peer that receives an
offer after its connection was negotiated (an ICE restart: new ICE credentials), starts
a fresh connection with the same media. Peers in browsers use rollback and
`restartIce()` instead; both send and receive the same standard messages.

aiortc does not trickle: descriptions carry all candidates. Candidates received in
batches (from browsers that trickle) are added as they come.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections import defaultdict
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import grpc
import jwt
from aiortc import RTCPeerConnection, RTCSessionDescription

from telemesh.clients import VISIT_AFFINITY
from telemesh.errors import reason_of
from telemesh.signaling.v1 import signaling_pb2, signaling_pb2_grpc
from telemesh.tracing.visit import record_visit_span
from telemesh.webrtc.ice import apply_ice_settings, candidate_from_proto, rtc_configuration
from telemesh.webrtc.media import SyntheticVideoTrack, count_frames
from telemesh.webrtc.stats import quality_from_stats

logger = logging.getLogger("telemesh_tools.peer")

SDP_TYPES = {
    "offer": signaling_pb2.SDP_TYPE_OFFER,
    "answer": signaling_pb2.SDP_TYPE_ANSWER,
    "pranswer": signaling_pb2.SDP_TYPE_PRANSWER,
}
CONNECTION_STATES = {
    "connecting": signaling_pb2.CONNECTION_STATE_CONNECTING,
    "connected": signaling_pb2.CONNECTION_STATE_CONNECTED,
    "failed": signaling_pb2.CONNECTION_STATE_FAILED,
    "closed": signaling_pb2.CONNECTION_STATE_CLOSED,
}
# Uplink failures worth retrying with the same request_id.
_RETRYABLE = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.RESOURCE_EXHAUSTED)


def _ice_ufrag(sdp: str) -> str:
    for line in sdp.splitlines():
        if line.startswith("a=ice-ufrag:"):
            return line.removeprefix("a=ice-ufrag:").strip()
    return ""


class CallPeer:
    """One side of a call. `await join()`, then wait for `connected`, frames, messages."""

    def __init__(
        self,
        stub: signaling_pb2_grpc.SignalingServiceStub,
        metadata: Sequence[tuple[str, str]],
        join_token: str,
        *,
        label: str = "peer",
        relay_only: bool = False,
        auto_negotiate: bool = True,
        reconnect_delay: float = 0.2,
        renew_token: Callable[[], Awaitable[str]] | None = None,
        traceparent: str | None = None,
    ) -> None:
        apply_ice_settings()
        self.stub = stub
        # The visit's trace: every call carries it (W3C traceparent) and the peer's own
        # spans (ICE connected, first frame) land in it. The join token names it.
        claims = _claims_of(join_token)
        self.traceparent = traceparent if traceparent is not None else claims.get("traceparent", "")
        trace_metadata = (("traceparent", self.traceparent),) if self.traceparent else ()
        # Signaling replicas: a visit's stream and calls go to one replica by this header.
        visit_id = claims.get("visit_id", "")
        affinity = ((VISIT_AFFINITY["signaling"], visit_id),) if visit_id else ()
        self.metadata = tuple(metadata) + trace_metadata + affinity
        self.join_token = join_token
        self.label = label
        self.relay_only = relay_only
        self.auto_negotiate = auto_negotiate
        self.reconnect_delay = reconnect_delay
        # Join tokens live minutes: a long call asks the session service for a new one
        # (IssueJoinToken) when a rejoin finds its token expired.
        self.renew_token = renew_token

        # What the room told us.
        self.room_id = ""
        self.role = signaling_pb2.PARTICIPANT_ROLE_UNSPECIFIED
        self.polite = False
        self.admitted = False
        self.peer_present = False
        self.recording = False
        self.closed_reason = signaling_pb2.ROOM_CLOSE_REASON_UNSPECIFIED
        self.ice_servers: list[signaling_pb2.IceServer] = []
        self.last_sequence = 0
        self.joins: list[signaling_pb2.Joined] = []
        self.events: list[signaling_pb2.JoinRoomResponse] = []

        # The call.
        self.pc: RTCPeerConnection | None = None
        self.generation = 0
        self.frames: defaultdict[int, int] = defaultdict(int)
        self.messages: list[str] = []
        self.connection_state = "new"
        self.negotiation_needed = True
        self.collisions = 0  # offers that met our own (glare)
        self._ignore_offer = False
        self._lock = asyncio.Lock()
        self._changed = asyncio.Condition()
        self._joined = asyncio.Event()
        self._stream_task: asyncio.Task[None] | None = None
        self._call: Any = None
        self._paused = False
        self._stopping = False
        self._background: set[asyncio.Task[Any]] = set()
        self._reports: asyncio.Queue[int] = asyncio.Queue()

    # --- public API -------------------------------------------------------------

    @property
    def frames_received(self) -> int:
        return sum(self.frames.values())

    @property
    def connected(self) -> bool:
        return self.connection_state == "connected"

    def describe(self) -> str:
        """A one-line summary for test failures and logs (no SDP, no addresses)."""
        kinds = [event.WhichOneof("event") for event in self.events[-12:]]
        return (
            f"{self.label}: generation={self.generation} state={self.connection_state} "
            f"signaling={self.pc.signalingState if self.pc else None} "
            f"joins={len(self.joins)} last_sequence={self.last_sequence} "
            f"frames={dict(self.frames)} collisions={self.collisions} "
            f"present={self.peer_present} admitted={self.admitted} recent={kinds}"
        )

    async def join(self, seconds: float = 10.0) -> signaling_pb2.Joined:
        """Opens the room stream (and keeps it open, rejoining after drops)."""
        self._stopping = False
        self._paused = False
        self._joined.clear()
        self._stream_task = asyncio.create_task(self._stream_loop(), name=f"{self.label}-stream")
        self._spawn(self._report_loop())
        await asyncio.wait_for(self._joined.wait(), seconds)
        return self.joins[-1]

    async def cut_stream(self) -> None:
        """Drops the room stream as a lost connection would, without rejoining."""
        self._paused = True
        if self._call is not None:
            self._call.cancel()
        if self._stream_task is not None:
            self._stream_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._stream_task
            self._stream_task = None

    async def rejoin(self, seconds: float = 10.0) -> signaling_pb2.Joined:
        """Rejoins after `cut_stream()`, resuming after the last sequence number seen."""
        self._paused = False
        self._joined.clear()
        self._stream_task = asyncio.create_task(self._stream_loop(), name=f"{self.label}-stream")
        await asyncio.wait_for(self._joined.wait(), seconds)
        return self.joins[-1]

    async def admit(self) -> None:
        await self._unary(
            self.stub.AdmitPatient,
            signaling_pb2.AdmitPatientRequest(request_id=_rid(), room_id=self.room_id),
        )

    async def negotiate(self) -> None:
        """Sends an offer now (the app's negotiationneeded)."""
        async with self._lock:
            await self._make_offer()

    async def restart_ice(self) -> None:
        """Restarts ICE: a fresh connection and a new offer with new ICE credentials."""
        async with self._lock:
            await self._make_offer(fresh=True)

    async def report_quality(self) -> signaling_pb2.CallQuality:
        pc = self.pc
        quality = signaling_pb2.CallQuality(frames_received=self.frames_received)
        if pc is not None:
            quality = quality_from_stats(await pc.getStats(), self.frames_received)
        await self._unary(
            self.stub.ReportCallQuality,
            signaling_pb2.ReportCallQualityRequest(
                request_id=_rid(), room_id=self.room_id, quality=quality
            ),
        )
        return quality

    async def leave(self) -> None:
        self._stopping = True
        await self._unary(
            self.stub.LeaveRoom,
            signaling_pb2.LeaveRoomRequest(request_id=_rid(), room_id=self.room_id),
        )

    async def close(self) -> None:
        """Stops streaming and closes the peer connection (always call it)."""
        self._stopping = True
        if self._call is not None:
            self._call.cancel()
        if self._stream_task is not None:
            self._stream_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._stream_task
        for task in list(self._background):
            task.cancel()
        if self.pc is not None:
            await self.pc.close()
            self.pc = None

    async def wait_for(self, predicate: Any, seconds: float = 15.0) -> None:
        """Waits until `predicate()` holds (re-checked on every change)."""

        async def until() -> None:
            async with self._changed:
                await self._changed.wait_for(predicate)

        await asyncio.wait_for(until(), seconds)

    async def wait_connected(self, seconds: float = 15.0) -> None:
        await self.wait_for(lambda: self.connected, seconds)

    async def wait_frames(
        self, count: int = 1, generation: int | None = None, seconds: float = 15.0
    ) -> None:
        def enough() -> bool:
            seen = self.frames[generation] if generation is not None else self.frames_received
            return seen >= count

        await self.wait_for(enough, seconds)

    async def wait_message(self, seconds: float = 15.0) -> str:
        await self.wait_for(lambda: bool(self.messages), seconds)
        return self.messages[-1]

    # --- the room stream --------------------------------------------------------

    async def _stream_loop(self) -> None:
        while not self._stopping and not self._paused:
            try:
                self._call = self.stub.JoinRoom(
                    signaling_pb2.JoinRoomRequest(
                        join_token=self.join_token, resume_after_sequence=self.last_sequence
                    ),
                    metadata=self.metadata,
                )
                async for event in self._call:
                    await self._on_event(event)
                if self.closed_reason or self._stopping:
                    return
            except grpc.aio.AioRpcError as error:
                if self.renew_token is not None and _expired_token(error):
                    self.join_token = await self.renew_token()
                    continue
                if error.code() in (
                    grpc.StatusCode.PERMISSION_DENIED,
                    grpc.StatusCode.UNAUTHENTICATED,
                    grpc.StatusCode.FAILED_PRECONDITION,
                ):
                    logger.warning("%s: join refused: %s", self.label, error.code().name)
                    await self._notify()
                    return
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("%s: room stream failed", self.label)
            if not self._stopping and not self._paused:
                await asyncio.sleep(self.reconnect_delay)

    async def _on_event(self, event: signaling_pb2.JoinRoomResponse) -> None:
        kind = event.WhichOneof("event")
        if kind != "keepalive":
            self.events.append(event)
        self.last_sequence = max(self.last_sequence, event.sequence)
        if kind == "joined":
            await self._on_joined(event.joined)
        elif kind == "peer_joined":
            self.peer_present = True
            await self._maybe_negotiate()
        elif kind == "peer_left":
            self.peer_present = False
        elif kind == "admitted":
            self.admitted = True
            await self._maybe_negotiate()
        elif kind == "session_description":
            async with self._lock:
                await self._on_description(event.session_description.description)
        elif kind == "ice_candidates":
            await self._on_candidates(event.ice_candidates.candidates)
        elif kind == "recording_changed":
            self.recording = event.recording_changed.recording
        elif kind == "room_closed":
            self.closed_reason = event.room_closed.reason
            self._stopping = True
        await self._notify()

    async def _on_joined(self, joined: signaling_pb2.Joined) -> None:
        self.joins.append(joined)
        self.room_id = joined.room_id
        self.role = joined.role
        self.polite = joined.polite
        self.admitted = joined.admitted
        self.peer_present = joined.peer_present
        self.recording = joined.recording
        self.ice_servers = list(joined.ice_servers)
        if joined.resume_gap:
            # Events were lost (a restart, a long drop): restart ICE to be sure.
            self.negotiation_needed = True
        self._joined.set()
        # The room forgot our connection state with the old stream: tell it again.
        state = CONNECTION_STATES.get(self.connection_state)
        if state is not None:
            self._reports.put_nowait(state)
        await self._maybe_negotiate()

    async def _maybe_negotiate(self) -> None:
        # Either side may offer (perfect negotiation settles glare), but a first call is
        # quicker without glare: there the polite side waits for the impolite side's offer.
        first_call = self.pc is None
        if first_call and self.polite:
            return
        if self.auto_negotiate and self.negotiation_needed and self.admitted and self.peer_present:
            async with self._lock:
                if self.negotiation_needed:
                    await self._make_offer()

    # --- perfect negotiation ----------------------------------------------------

    async def _make_offer(self, fresh: bool = False) -> None:
        pc = await self._new_connection() if fresh or self.pc is None or _used(self.pc) else self.pc
        await pc.setLocalDescription(await pc.createOffer())
        self.negotiation_needed = False
        await self._send_description(pc)

    async def _on_description(self, description: signaling_pb2.SessionDescription) -> None:
        if description.type == signaling_pb2.SDP_TYPE_OFFER:
            collision = self.pc is not None and self.pc.signalingState != "stable"
            self.collisions += collision
            self._ignore_offer = collision and not self.polite
            if self._ignore_offer:
                return
            # A polite peer in glare drops its own offer (aiortc cannot roll back), and
            # an offer to a negotiated connection is an ICE restart: both take a fresh
            # connection.
            pc = self.pc
            if pc is None or collision or _used(pc):
                pc = await self._new_connection()
            await pc.setRemoteDescription(RTCSessionDescription(description.sdp, "offer"))
            await pc.setLocalDescription(await pc.createAnswer())
            self.negotiation_needed = False
            await self._send_description(pc)
        elif description.type == signaling_pb2.SDP_TYPE_ANSWER:
            pc = self.pc
            if pc is None or pc.signalingState != "have-local-offer":
                return  # an answer to an offer we gave up
            await pc.setRemoteDescription(RTCSessionDescription(description.sdp, "answer"))
        # Rollbacks and provisional answers from browsers need nothing from us.

    async def _on_candidates(self, candidates: Sequence[signaling_pb2.IceCandidate]) -> None:
        pc = self.pc
        if pc is None or self._ignore_offer or pc.remoteDescription is None:
            return
        current = _ice_ufrag(pc.remoteDescription.sdp)
        for candidate in candidates:
            if candidate.username_fragment and candidate.username_fragment != current:
                continue  # from an ICE generation we no longer use
            try:
                await pc.addIceCandidate(candidate_from_proto(candidate))
            except Exception:
                logger.debug("%s: candidate not added", self.label)

    async def _send_description(self, pc: RTCPeerConnection) -> None:
        local = pc.localDescription
        await self._unary(
            self.stub.SendSessionDescription,
            signaling_pb2.SendSessionDescriptionRequest(
                request_id=_rid(),
                room_id=self.room_id,
                description=signaling_pb2.SessionDescription(
                    type=SDP_TYPES[local.type],
                    sdp=local.sdp,
                ),
            ),
        )

    # --- the peer connection ----------------------------------------------------

    async def _new_connection(self) -> RTCPeerConnection:
        old = self.pc
        self.generation += 1
        generation = self.generation
        pc = RTCPeerConnection(rtc_configuration(self.ice_servers, self.relay_only))
        self.pc = pc
        self.connection_state = "new"
        began = time.time_ns()
        first_frame = True
        pc.addTrack(SyntheticVideoTrack())
        channel = pc.createDataChannel("chat", negotiated=True, id=0)

        @channel.on("open")
        def on_open() -> None:
            channel.send(f"hello from {self.label}")

        @channel.on("message")
        def on_message(message: Any) -> None:
            if self.generation == generation:
                self.messages.append(str(message))
                self._spawn(self._notify())

        @pc.on("track")
        def on_track(track: Any) -> None:
            def on_frame() -> None:
                nonlocal first_frame
                if first_frame:
                    first_frame = False
                    self._trace("peer first frame", began, generation)
                self.frames[generation] += 1
                if self.frames[generation] in (1, 5, 30) or self.frames[generation] % 30 == 0:
                    self._spawn(self._notify())

            self._spawn(count_frames(track, on_frame))

        @pc.on("connectionstatechange")
        def on_state() -> None:
            if self.generation != generation:
                return  # a replaced connection closing
            self.connection_state = pc.connectionState
            if pc.connectionState == "connected":
                self._trace("peer ice connected", began, generation)
            state = CONNECTION_STATES.get(pc.connectionState)
            if state is not None:
                self._reports.put_nowait(state)
            self._spawn(self._notify())

        if old is not None:
            self._spawn(old.close())
        return pc

    def _trace(self, name: str, began_ns: int, generation: int) -> None:
        record_visit_span(
            self.traceparent,
            name,
            began_ns,
            time.time_ns(),
            {
                "telemesh.participant.role": self.label,
                "telemesh.room_id": self.room_id,
                "telemesh_tools.peer.generation": generation,
            },
        )

    async def _report_loop(self) -> None:
        """Reports connection states in order; a report that fails waits for the next."""
        while True:
            state = await self._reports.get()
            if not self.room_id:
                continue
            with contextlib.suppress(grpc.aio.AioRpcError):
                await self._unary(
                    self.stub.ReportConnectionState,
                    signaling_pb2.ReportConnectionStateRequest(
                        request_id=_rid(),
                        room_id=self.room_id,
                        state=state,  # type: ignore[arg-type]
                    ),
                )

    # --- plumbing -----------------------------------------------------------------

    async def _unary(self, method: Any, request: Any, attempts: int = 20) -> Any:
        """An uplink call, retried with the same request_id while it is retryable."""
        for attempt in range(attempts - 1):
            try:
                return await method(request, metadata=self.metadata, timeout=10)
            except grpc.aio.AioRpcError as error:
                if error.code() not in _RETRYABLE:
                    raise
                await asyncio.sleep(min(1.0, 0.05 * 2**attempt))
        return await method(request, metadata=self.metadata, timeout=10)

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    def _spawn(self, work: Any) -> None:
        task = asyncio.ensure_future(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)


def _claims_of(join_token: str) -> dict[str, str]:
    """The visit and trace a join token names (read, not verified: they only label and
    route; signaling verifies the token itself)."""
    try:
        claims = jwt.decode(join_token, options={"verify_signature": False})
    except jwt.PyJWTError:
        return {}
    return {key: str(claims.get(key, "")) for key in ("visit_id", "traceparent")}


def _expired_token(error: grpc.aio.AioRpcError) -> bool:
    """A join refused because the token no longer verifies (typically expired)."""
    return (
        error.code() == grpc.StatusCode.PERMISSION_DENIED
        and reason_of(error) == "INVALID_JOIN_TOKEN"
    )


def _used(pc: RTCPeerConnection) -> bool:
    """Whether a connection has been through an offer already."""
    return pc.localDescription is not None or pc.remoteDescription is not None


def _rid() -> str:
    return str(uuid.uuid4())
