"""Pre-call connectivity checks: an aiortc echo peer that sends the caller's media back.

The caller offers (with all its candidates); the echo peer answers, returns every track
it receives, and after a short measurement reports round-trip time (from the caller's
receiver reports on the echoed media), loss and jitter of the caller's media, and the
frames it received. Checks live in memory for a while, readable by their owner only.

Abuse limits: a user runs one check at a time (`PRECALL_ALREADY_RUNNING`) and all users
together at most `TELEMESH_SIGNALING_MAX_PRECALL_CHECKS` (`PRECALL_BUSY`), both
`RESOURCE_EXHAUSTED`: a quota that frees itself when the running check ends, so a
client waits and retries. The offer's candidates pass `candidate_filter` before aiortc
sees them: the echo peer never sends connectivity checks to loopback, private or other
special-purpose addresses (loopback only in the one-machine mode).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from svc_signaling.candidate_filter import filter_offer
from svc_signaling.settings import SignalingSettings
from telemesh.errors import NotFound, PermissionDenied, ResourceExhausted
from telemesh.logs import log
from telemesh.signaling.v1 import signaling_pb2
from telemesh.webrtc.stats import quality_from_stats

if TYPE_CHECKING:
    from aiortc import RTCPeerConnection

    from telemesh.webrtc.media import CountingTrack

logger = logging.getLogger("telemesh.signaling.precall")
KEEP_SECONDS = 600.0
Owner = tuple[str, str]  # (role, subject)


@dataclass
class PreCallCheck:
    check_id: str
    owner: Owner
    answer_sdp: str = ""
    state: int = signaling_pb2.PRE_CALL_CHECK_STATE_RUNNING
    result: signaling_pb2.GetPreCallCheckResponse = field(
        default_factory=signaling_pb2.GetPreCallCheckResponse
    )
    created: float = field(default_factory=time.monotonic)
    echoes: list[CountingTrack] = field(default_factory=list)

    def response(self) -> signaling_pb2.GetPreCallCheckResponse:
        reply = signaling_pb2.GetPreCallCheckResponse()
        reply.CopyFrom(self.result)
        reply.state = self.state  # type: ignore[assignment]
        for echo in self.echoes:
            if echo.kind == "video":
                reply.frames_received = max(reply.frames_received, echo.frames)
            else:
                reply.audio_frames_received = max(reply.audio_frames_received, echo.frames)
        return reply


class PreCallChecks:
    def __init__(self, settings: SignalingSettings) -> None:
        self.settings = settings
        self._checks: dict[str, PreCallCheck] = {}
        # Who holds a slot, with their check's id: taken before the first await of
        # start() and given back when the measurement ends, so concurrent starts by one
        # user cannot slip past the caps.
        self._running: dict[Owner, str] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def _forget_old(self) -> None:
        now = time.monotonic()
        for check_id, check in list(self._checks.items()):
            if now - check.created > KEEP_SECONDS:
                del self._checks[check_id]

    def _reserve(self, owner: Owner) -> str:
        """A slot for `owner`'s new check (its id), or RESOURCE_EXHAUSTED."""
        running = self._running.get(owner)
        if running is not None:
            raise ResourceExhausted(
                "PRECALL_ALREADY_RUNNING",
                "you already have a pre-call check running; wait for it to finish",
                {"check_id": running},
            )
        if len(self._running) >= self.settings.max_precall_checks:
            raise ResourceExhausted("PRECALL_BUSY", "too many pre-call checks running; retry soon")
        check_id = secrets.token_urlsafe(16)
        self._running[owner] = check_id
        return check_id

    def _release(self, owner: Owner, check_id: str) -> None:
        if self._running.get(owner) == check_id:  # not a newer check of the same owner
            del self._running[owner]

    async def start(self, owner: Owner, offer_sdp: str) -> PreCallCheck:
        self._forget_old()
        check = PreCallCheck(check_id=self._reserve(owner), owner=owner)
        try:
            pc = await self._answer(check, offer_sdp)
        except BaseException:
            self._release(owner, check.check_id)
            raise
        self._checks[check.check_id] = check
        task = asyncio.create_task(self._measure(check, pc))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        # Also when the task is cancelled before it ever ran (the service stopping).
        task.add_done_callback(lambda _: self._release(owner, check.check_id))
        return check

    async def _answer(self, check: PreCallCheck, offer_sdp: str) -> RTCPeerConnection:
        """The echo peer for `check`, answering the filtered offer."""
        # aiortc (and av, numpy) load with the first check: a third of the process's
        # memory, which a service that only relays messages does not need.
        from aiortc import RTCPeerConnection, RTCSessionDescription

        from telemesh.webrtc.ice import apply_ice_settings
        from telemesh.webrtc.media import CountingTrack

        apply_ice_settings()
        offer_sdp, dropped = filter_offer(
            offer_sdp, allow_loopback=self.settings.precall_allow_loopback
        )
        if dropped:
            # A count only: candidates (addresses) never reach the logs.
            log(
                logger,
                logging.INFO,
                "pre-call candidates refused",
                check_id=check.check_id,
                refused=dropped,
            )
        pc = RTCPeerConnection()

        @pc.on("track")
        def on_track(track: Any) -> None:
            echo = CountingTrack(track)
            check.echoes.append(echo)
            pc.addTrack(echo)

        try:
            await pc.setRemoteDescription(RTCSessionDescription(offer_sdp, "offer"))
            await pc.setLocalDescription(await pc.createAnswer())
        except BaseException:
            await pc.close()
            raise
        check.answer_sdp = pc.localDescription.sdp
        return pc

    async def _measure(self, check: PreCallCheck, pc: RTCPeerConnection) -> None:
        state = signaling_pb2.PRE_CALL_CHECK_STATE_FAILED
        try:
            if await self._connected(pc):
                await asyncio.sleep(self.settings.precall_seconds)
                video = (echo.frames for echo in check.echoes if echo.kind == "video")
                quality = quality_from_stats(await pc.getStats(), max(video, default=0))
                check.result = signaling_pb2.GetPreCallCheckResponse(
                    round_trip_time_ms=quality.round_trip_time_ms,
                    fraction_lost=quality.fraction_lost,
                    jitter_ms=quality.jitter_ms,
                )
                state = signaling_pb2.PRE_CALL_CHECK_STATE_SUCCEEDED
        except Exception:
            logger.exception("pre-call check failed")
        finally:
            await pc.close()
            # The slot is free before the final state shows: whoever reads it may start
            # the next check at once.
            self._release(check.owner, check.check_id)
            check.state = state
            log(
                logger,
                logging.INFO,
                "pre-call check done",
                check_id=check.check_id,
                state=signaling_pb2.PreCallCheckState.Name(state),
            )

    async def _connected(self, pc: RTCPeerConnection) -> bool:
        """Whether the caller connects before the timeout (False at once when ICE fails:
        no usable candidate pair)."""
        settled = asyncio.Event()

        @pc.on("connectionstatechange")
        def on_state() -> None:
            if pc.connectionState in ("connected", "failed"):
                settled.set()

        on_state()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(settled.wait(), self.settings.precall_connect_timeout_seconds)
        return bool(pc.connectionState == "connected")

    def get(self, owner: Owner, check_id: str) -> PreCallCheck:
        check = self._checks.get(check_id)
        if check is None:
            raise NotFound("pre_call_check", check_id)
        if check.owner != owner:
            raise PermissionDenied("NOT_OWNER", "the pre-call check belongs to someone else")
        return check

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
