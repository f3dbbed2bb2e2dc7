"""SignalingService: a visit's room, its event stream and its uplink calls."""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import grpc
from google.protobuf.message import Message
from sqlmodel.ext.asyncio.session import AsyncSession

from svc_signaling import convert, requests
from svc_signaling.access import RoomAccess
from svc_signaling.consent_link import RECORDING, TELEHEALTH
from svc_signaling.ice_servers import ice_servers_for
from svc_signaling.models import locked_record
from svc_signaling.rooms import (
    CLINICIAN,
    PATIENT,
    ROLE_NAMES,
    RecentRequests,
    Role,
    Room,
    other,
)
from telemesh import metrics
from telemesh.auth import current_principal, require_role, require_service
from telemesh.errors import FailedPrecondition, PermissionDenied, ResourceExhausted, invalid
from telemesh.idempotency import request_digest, run_idempotent
from telemesh.logs import log
from telemesh.signaling.v1 import signaling_pb2, signaling_pb2_grpc
from telemesh.tracing.visit import visit_span

if TYPE_CHECKING:
    from svc_signaling.consent_link import ConsentLink
    from svc_signaling.join_tokens import JoinTokenVerifier
    from svc_signaling.precall import PreCallChecks
    from svc_signaling.registry import RoomRegistry
    from svc_signaling.room_hosts import RoomHosts
    from svc_signaling.room_life import RoomLife
    from svc_signaling.session_link import SessionLink
    from svc_signaling.settings import SignalingSettings
    from telemesh.db import Database

logger = logging.getLogger("telemesh.signaling")
R = TypeVar("R", bound=Message)
H = TypeVar("H", bound=Callable[..., Awaitable[Any]])
Context = grpc.aio.ServicerContext[Any, Any]

ENDING_STATES = frozenset(
    {
        signaling_pb2.CONNECTION_STATE_DISCONNECTED,
        signaling_pb2.CONNECTION_STATE_FAILED,
        signaling_pb2.CONNECTION_STATE_CLOSED,
    }
)


def room_attributes(room: Room, role: Role | None = None) -> dict[str, str]:
    """Identifiers of a room for spans (never SDP or candidates)."""
    attributes = {"telemesh.visit_id": room.visit_id, "telemesh.room_id": room.room_id}
    if role is not None:
        attributes["telemesh.participant.role"] = ROLE_NAMES[role]
    return attributes


def in_visit_trace(action: str) -> Callable[[H], H]:
    """Runs a room call in a span of the visit's trace (when the room is known here)."""

    def wrap(handler: H) -> H:
        @functools.wraps(handler)
        async def traced(self: SignalingServicer, request: Any, context: Context) -> Any:
            room = self.deps.registry.cached_room(request.room_id)
            if room is None or not room.traceparent:
                return await handler(self, request, context)
            with visit_span(room.traceparent, f"room {action}", room_attributes(room)):
                return await handler(self, request, context)

        return traced  # type: ignore[return-value]

    return wrap


@dataclass(frozen=True)
class SignalingDependencies:
    """What the servicer needs, built by the app (svc_signaling.app)."""

    db: Database
    settings: SignalingSettings
    registry: RoomRegistry
    join_tokens: JoinTokenVerifier
    consent: ConsentLink
    session: SessionLink
    precall: PreCallChecks
    rooms: RoomLife
    # Which replica serves each room (with replicas on PostgreSQL).
    hosts: RoomHosts
    # Runs work in the background without holding up the call (telemesh.background).
    spawn: Callable[[Coroutine[Any, Any, Any]], None]
    # New outbox events were committed: the relay looks now.
    outbox_committed: Callable[[], None]


class SignalingServicer(signaling_pb2_grpc.SignalingServiceServicer):
    def __init__(self, deps: SignalingDependencies) -> None:
        self.deps = deps
        self.settings = deps.settings
        self._precall_requests = RecentRequests()
        self.access = RoomAccess(deps.join_tokens, deps.registry, deps.hosts)

    # --- shared steps -------------------------------------------------------------

    def _rate(self, room: Room, role: Role) -> None:
        if not room.participants[role].bucket.take():
            metrics.count(
                "telemesh.signaling.rate_limited", "Uplink calls refused by the rate limit"
            )
            raise ResourceExhausted(
                "RATE_LIMITED", "too many messages; slow down and retry", {"room_id": room.room_id}
            )

    @staticmethod
    def _open(room: Room) -> None:
        if room.closed:
            raise FailedPrecondition(
                "ROOM_CLOSED",
                "the room is closed",
                {"reason": convert.close_reason_name(room.close_reason)},
            )

    @staticmethod
    async def _relay_once(
        method: str,
        request: Any,
        recent: RecentRequests,
        response_type: type[R],
        work: Callable[[], Awaitable[R]],
    ) -> R:
        """Runs a call whose effect lives in memory once per request_id, remembered in
        `recent` (a room's, or the pre-call checks'): a retry gets the first answer."""
        digest = request_digest(method, request)
        seen = recent.get(request.request_id)
        if seen is not None:
            if seen[0] != digest:
                raise invalid(
                    "request_id", "this request_id was already used for a different request"
                )
            return response_type.FromString(seen[1])
        response = await work()
        recent.put(request.request_id, digest, response.SerializeToString())
        return response

    # --- JoinRoom -------------------------------------------------------------------

    async def JoinRoom(
        self, request: signaling_pb2.JoinRoomRequest, context: Context
    ) -> AsyncIterator[signaling_pb2.JoinRoomResponse]:
        principal = require_role("patient", "clinician")
        requests.join(request)
        claims = await self.access.own_join_token(request.join_token, principal)
        room = await self.deps.registry.for_join(claims)
        await self.deps.hosts.hold(room.room_id)  # its streams are here from now on
        room.traceparent = claims.traceparent or room.traceparent
        role = room.role_of(principal)
        self._open(room)
        if not await self.deps.consent.is_permitted(room.user_id(PATIENT), TELEHEALTH):
            raise FailedPrecondition("CONSENT_REQUIRED", "telehealth consent is not active")

        subscription, joined, replay = room.subscribe(role, request.resume_after_sequence)
        joined.joined.ice_servers.extend(ice_servers_for(self.settings, claims))
        metrics.count(
            "telemesh.signaling.joins",
            "Room streams accepted, by role; resumed: a stream that resumed after a sequence",
            role=ROLE_NAMES[role],
            resumed="true" if request.resume_after_sequence else "false",
        )
        log(
            logger,
            logging.INFO,
            "joined",
            room_id=room.room_id,
            visit_id=room.visit_id,
            role=ROLE_NAMES[role],
            resumed_after=request.resume_after_sequence,
            replayed=len(replay),
            resume_gap=joined.joined.resume_gap,
        )
        try:
            # The whole time in the room is one span of the visit's trace.
            with visit_span(room.traceparent, "room stream", room_attributes(room, role)):
                yield joined
                for event in replay:
                    yield event
                async for event in room.stream(role, subscription):
                    yield event
        finally:
            if room.unsubscribe(role, subscription):
                # The participant lost (or ended) its stream: the call is not whole.
                self.deps.spawn(self.deps.rooms.settle(room, ending=True))

    # --- relayed messages -----------------------------------------------------------

    @in_visit_trace("session description")
    async def SendSessionDescription(
        self, request: signaling_pb2.SendSessionDescriptionRequest, context: Context
    ) -> signaling_pb2.SendSessionDescriptionResponse:
        requests.session_description(request, self.settings)
        return await self._forward(
            "SendSessionDescription",
            request,
            signaling_pb2.SendSessionDescriptionResponse,
            lambda sender: convert.description_received(sender, request.description),
        )

    @in_visit_trace("ice candidates")
    async def SendIceCandidates(
        self, request: signaling_pb2.SendIceCandidatesRequest, context: Context
    ) -> signaling_pb2.SendIceCandidatesResponse:
        requests.ice_candidates(request, self.settings)
        return await self._forward(
            "SendIceCandidates",
            request,
            signaling_pb2.SendIceCandidatesResponse,
            lambda sender: convert.candidates_received(sender, request.candidates),
        )

    async def _forward(
        self,
        method: str,
        request: Any,
        response_type: type[R],
        event_for: Callable[[Role], signaling_pb2.JoinRoomResponse],
    ) -> R:
        """Relays a participant's message to the other one, once per request_id, after
        the rate limit and the admission rule."""
        room, role = await self.access.member(request.room_id)

        async def relay() -> R:
            self._rate(room, role)
            self._open(room)
            self._require_admitted(room)
            room.emit(other(role), event_for(role))
            return response_type()

        return await self._relay_once(method, request, room.recent, response_type, relay)

    @staticmethod
    def _require_admitted(room: Room) -> None:
        # Nothing passes between the two before the clinician admits the patient: the
        # patient's messages are not relayed, and no media is set up towards them.
        if not room.admitted:
            raise FailedPrecondition(
                "NOT_ADMITTED", "the clinician has not admitted the patient yet"
            )

    # --- admission and recording ----------------------------------------------------

    async def _clinicians_room(self, request: Any, what: str) -> Room:
        """The open room of a call only its clinician may make (`what` they do)."""
        requests.room_only(request)
        room, role = await self.access.member(request.room_id)
        if role != CLINICIAN:
            raise PermissionDenied("CLINICIAN_ONLY", f"only the visit's clinician {what}")
        self._open(room)
        return room

    @in_visit_trace("admit")
    async def AdmitPatient(
        self, request: signaling_pb2.AdmitPatientRequest, context: Context
    ) -> signaling_pb2.AdmitPatientResponse:
        room = await self._clinicians_room(request, "admits the patient")
        await self.deps.session.admit(room.visit_id, request.request_id)

        async def work(session: AsyncSession) -> signaling_pb2.AdmitPatientResponse:
            await locked_record(session, room.room_id, admitted=True)
            return signaling_pb2.AdmitPatientResponse()

        reply = await run_idempotent(
            self.deps.db, "AdmitPatient", request, signaling_pb2.AdmitPatientResponse, work
        )
        if not room.admitted:
            room.admitted = True
            room.admitted_at = time.monotonic()
            room.emit_both(admitted=signaling_pb2.Admitted())
            log(logger, logging.INFO, "admitted", room_id=room.room_id, visit_id=room.visit_id)
        return reply

    @in_visit_trace("recording")
    async def SetRecording(
        self, request: signaling_pb2.SetRecordingRequest, context: Context
    ) -> signaling_pb2.SetRecordingResponse:
        room = await self._clinicians_room(request, "turns recording on or off")
        if request.recording and not await self.deps.consent.is_permitted(
            room.user_id(PATIENT), RECORDING
        ):
            raise FailedPrecondition(
                "RECORDING_CONSENT_REQUIRED", "the patient has not consented to recording"
            )

        async def work(session: AsyncSession) -> signaling_pb2.SetRecordingResponse:
            await locked_record(session, room.room_id, recording=request.recording)
            return signaling_pb2.SetRecordingResponse(recording=request.recording)

        reply = await run_idempotent(
            self.deps.db, "SetRecording", request, signaling_pb2.SetRecordingResponse, work
        )
        self.deps.rooms.apply_recording(room, reply.recording)
        return reply

    # --- connection and quality -----------------------------------------------------

    @in_visit_trace("connection state")
    async def ReportConnectionState(
        self, request: signaling_pb2.ReportConnectionStateRequest, context: Context
    ) -> signaling_pb2.ReportConnectionStateResponse:
        requests.connection_report(request)
        room, role = await self.access.member(request.room_id)

        async def report() -> signaling_pb2.ReportConnectionStateResponse:
            self._rate(room, role)
            room.participants[role].connection_state = request.state
            if room.admitted_at is not None and room.both_connected():
                metrics.observe(
                    "telemesh.call.setup_time",
                    "s",
                    "From admission to both participants connected",
                    time.monotonic() - room.admitted_at,
                )
                room.admitted_at = None
            ending = request.state in ENDING_STATES
            # settle() can open a period only when both are connected, close one only on
            # an ending state: otherwise there is nothing to write.
            if ending or room.both_connected():
                await self.deps.rooms.settle(room, ending=ending)
            return signaling_pb2.ReportConnectionStateResponse()

        return await self._relay_once(
            "ReportConnectionState",
            request,
            room.recent,
            signaling_pb2.ReportConnectionStateResponse,
            report,
        )

    @in_visit_trace("call quality")
    async def ReportCallQuality(
        self, request: signaling_pb2.ReportCallQualityRequest, context: Context
    ) -> signaling_pb2.ReportCallQualityResponse:
        requests.quality_report(request)
        room, role = await self.access.member(request.room_id)

        async def record() -> signaling_pb2.ReportCallQualityResponse:
            self._rate(room, role)
            quality = request.quality
            reporter = ROLE_NAMES[role]
            metrics.observe(
                "telemesh.call.round_trip_time",
                "ms",
                "Call RTT as participants report it",
                quality.round_trip_time_ms,
                role=reporter,
            )
            metrics.observe(
                "telemesh.call.fraction_lost",
                "1",
                "Call packet loss as participants report it",
                quality.fraction_lost,
                role=reporter,
            )
            log(
                logger,
                logging.INFO,
                "call quality",
                room_id=room.room_id,
                visit_id=room.visit_id,
                role=ROLE_NAMES[role],
                rtt_ms=round(quality.round_trip_time_ms, 1),
                fraction_lost=round(quality.fraction_lost, 4),
                jitter_ms=round(quality.jitter_ms, 1),
                frames_received=quality.frames_received,
            )
            return signaling_pb2.ReportCallQualityResponse()

        return await self._relay_once(
            "ReportCallQuality",
            request,
            room.recent,
            signaling_pb2.ReportCallQualityResponse,
            record,
        )

    @in_visit_trace("leave")
    async def LeaveRoom(
        self, request: signaling_pb2.LeaveRoomRequest, context: Context
    ) -> signaling_pb2.LeaveRoomResponse:
        requests.room_only(request)
        room, role = await self.access.member(request.room_id)

        async def leave() -> signaling_pb2.LeaveRoomResponse:
            room.leave(role)
            await self.deps.rooms.settle(room, ending=True)
            log(logger, logging.INFO, "left", room_id=room.room_id, role=ROLE_NAMES[role])
            return signaling_pb2.LeaveRoomResponse()

        return await self._relay_once(
            "LeaveRoom", request, room.recent, signaling_pb2.LeaveRoomResponse, leave
        )

    # --- ICE servers and pre-call checks --------------------------------------------

    async def GetIceServers(
        self, request: signaling_pb2.GetIceServersRequest, context: Context
    ) -> signaling_pb2.GetIceServersResponse:
        principal = require_role("patient", "clinician")
        if not request.join_token:
            # STUN only: a relay is for a visit's participant (the pre-call check before
            # check-in has no visit and tests the direct path).
            return signaling_pb2.GetIceServersResponse(
                ice_servers=ice_servers_for(self.settings, None)
            )
        claims = await self.access.own_join_token(request.join_token, principal)
        if claims.window_end <= time.time():
            raise FailedPrecondition(
                "OUTSIDE_JOIN_WINDOW",
                "the visit's join window is closed",
                {"visit_id": claims.visit_id},
            )
        return signaling_pb2.GetIceServersResponse(
            ice_servers=ice_servers_for(self.settings, claims)
        )

    async def StartPreCallCheck(
        self, request: signaling_pb2.StartPreCallCheckRequest, context: Context
    ) -> signaling_pb2.StartPreCallCheckResponse:
        principal = require_role("patient", "clinician")
        requests.precall_start(request, self.settings)

        async def start() -> signaling_pb2.StartPreCallCheckResponse:
            try:
                started = await self.deps.precall.start(
                    (principal.role, principal.subject), request.offer.sdp
                )
            except ValueError:
                raise invalid("offer.sdp", "the offer could not be used") from None
            return convert.precall_started(started.check_id, started.answer_sdp)

        return await self._relay_once(
            "StartPreCallCheck",
            request,
            self._precall_requests,
            signaling_pb2.StartPreCallCheckResponse,
            start,
        )

    async def GetPreCallCheck(
        self, request: signaling_pb2.GetPreCallCheckRequest, context: Context
    ) -> signaling_pb2.GetPreCallCheckResponse:
        principal = current_principal()
        check_id = requests.precall_id(request)
        return self.deps.precall.get((principal.role, principal.subject), check_id).response()

    async def CloseRoom(
        self, request: signaling_pb2.CloseRoomRequest, context: Context
    ) -> signaling_pb2.CloseRoomResponse:
        require_service("session")
        visit_id, reason = requests.room_closing(request)
        room = await self.deps.registry.of_visit(visit_id)
        if room is None or room.closed:
            return signaling_pb2.CloseRoomResponse(closed=False)
        await self.deps.hosts.check(room.room_id)  # closed where its streams are
        await self.deps.rooms.close(room, reason)
        return signaling_pb2.CloseRoomResponse(closed=True)
