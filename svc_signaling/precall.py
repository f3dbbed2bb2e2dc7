"""Pre-call connectivity checks: an aiortc echo peer that sends the caller's media back.

The caller offers (with all its candidates); the echo peer answers, returns every track
it receives, and after a short measurement reports round-trip time (from the caller's
receiver reports on the echoed media), loss and jitter of the caller's media, and the
frames it received. Checks live in memory for a while, readable by their owner only.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from svc_signaling.settings import SignalingSettings
from telemesh.errors import NotFound, PermissionDenied, ResourceExhausted
from telemesh.logs import log
from telemesh.peer.stats import quality_from_stats
from telemesh.signaling.v1 import signaling_pb2

if TYPE_CHECKING:
    from aiortc import RTCPeerConnection

    from telemesh.peer.media import CountingTrack

logger = logging.getLogger("telemesh.signaling.precall")
KEEP_SECONDS = 600.0


@dataclass
class PreCallCheck:
    check_id: str
    owner: tuple[str, str]
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
        self._tasks: set[asyncio.Task[None]] = set()

    def _forget_old(self) -> None:
        now = time.monotonic()
        for check_id, check in list(self._checks.items()):
            if now - check.created > KEEP_SECONDS:
                del self._checks[check_id]

    async def start(self, owner: tuple[str, str], offer_sdp: str) -> PreCallCheck:
        self._forget_old()
        if len(self._tasks) >= self.settings.max_precall_checks:  # a task per running check
            raise ResourceExhausted("PRECALL_BUSY", "too many pre-call checks running; retry soon")
        # aiortc (and av, numpy) load with the first check: a third of the process's
        # memory, which a service that only relays messages does not need.
        from aiortc import RTCPeerConnection, RTCSessionDescription

        from telemesh.peer.ice import apply_ice_settings
        from telemesh.peer.media import CountingTrack

        apply_ice_settings()
        check = PreCallCheck(check_id=secrets.token_urlsafe(16), owner=owner)
        pc = RTCPeerConnection()

        @pc.on("track")
        def on_track(track: Any) -> None:
            echo = CountingTrack(track)
            check.echoes.append(echo)
            pc.addTrack(echo)

        try:
            await pc.setRemoteDescription(RTCSessionDescription(offer_sdp, "offer"))
            await pc.setLocalDescription(await pc.createAnswer())
        except Exception:
            await pc.close()
            raise
        check.answer_sdp = pc.localDescription.sdp
        self._checks[check.check_id] = check
        task = asyncio.create_task(self._measure(check, pc))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return check

    async def _measure(self, check: PreCallCheck, pc: RTCPeerConnection) -> None:
        connected = asyncio.Event()

        @pc.on("connectionstatechange")
        def on_state() -> None:
            if pc.connectionState == "connected":
                connected.set()

        try:
            if pc.connectionState == "connected":
                connected.set()
            await asyncio.wait_for(connected.wait(), self.settings.precall_connect_timeout_seconds)
            await asyncio.sleep(self.settings.precall_seconds)
            frames = max((echo.frames for echo in check.echoes if echo.kind == "video"), default=0)
            quality = quality_from_stats(await pc.getStats(), frames)
            check.result = signaling_pb2.GetPreCallCheckResponse(
                round_trip_time_ms=quality.round_trip_time_ms,
                fraction_lost=quality.fraction_lost,
                jitter_ms=quality.jitter_ms,
            )
            check.state = signaling_pb2.PRE_CALL_CHECK_STATE_SUCCEEDED
        except TimeoutError:
            check.state = signaling_pb2.PRE_CALL_CHECK_STATE_FAILED
        except Exception:
            logger.exception("pre-call check failed")
            check.state = signaling_pb2.PRE_CALL_CHECK_STATE_FAILED
        finally:
            await pc.close()
            log(
                logger,
                logging.INFO,
                "pre-call check done",
                check_id=check.check_id,
                state=signaling_pb2.PreCallCheckState.Name(check.state),  # type: ignore[arg-type]
            )

    def get(self, owner: tuple[str, str], check_id: str) -> PreCallCheck:
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
