"""A visit's room in memory: its two participants' event logs and live streams.

Only the visit's patient and clinician have a place in a room, so events cannot reach
anyone else: each event is appended to exactly one participant's log (the other's),
and a stream reads only its own participant's log.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TypeAlias

from google.protobuf.timestamp_pb2 import Timestamp

from svc_signaling.event_log import EventLog
from svc_signaling.rate_limit import TokenBucket
from svc_signaling.settings import SignalingSettings
from telemesh.auth import Principal
from telemesh.errors import Aborted, PermissionDenied, Unavailable
from telemesh.signaling.v1 import signaling_pb2

Role: TypeAlias = signaling_pb2.ParticipantRole.ValueType
PATIENT = signaling_pb2.PARTICIPANT_ROLE_PATIENT
CLINICIAN = signaling_pb2.PARTICIPANT_ROLE_CLINICIAN
ROLE_NAMES = {PATIENT: "patient", CLINICIAN: "clinician"}
ROLES_BY_NAME = {name: role for role, name in ROLE_NAMES.items()}


def other(role: Role) -> Role:
    return CLINICIAN if role == PATIENT else PATIENT


def now_timestamp() -> Timestamp:
    stamp = Timestamp()
    stamp.GetCurrentTime()
    return stamp


class Subscription:
    """One JoinRoom stream of one participant."""

    def __init__(self, delivered: int) -> None:
        self.delivered = delivered
        self.wake = asyncio.Event()
        self.superseded = False  # a newer stream took over: this one ends ABORTED
        self.draining = False  # the process is stopping: the client resumes elsewhere
        self.left = False  # the participant left: this one ends OK


@dataclass
class Participant:
    user_id: str
    log: EventLog
    bucket: TokenBucket
    subscription: Subscription | None = None
    connection_state: int = signaling_pb2.CONNECTION_STATE_UNSPECIFIED

    @property
    def present(self) -> bool:
        return self.subscription is not None


class RecentRequests:
    """Answers already given to calls whose effect lives in memory, by request_id
    (bounded): a room's relayed messages and reports, and the pre-call checks.

    Relayed messages live only in memory, so their idempotency does too: a retry that
    reaches this process again gets the first answer; one that reaches a restarted
    process is relayed again, which is right, since the first copy was lost with it.
    What such a call writes (a connected period) is idempotent by itself.
    """

    def __init__(self, capacity: int = 1024) -> None:
        self.capacity = capacity
        self._answers: OrderedDict[str, tuple[str, bytes]] = OrderedDict()

    def get(self, request_id: str) -> tuple[str, bytes] | None:
        """(the request's digest, the serialized answer), if this request_id was seen."""
        return self._answers.get(request_id)

    def put(self, request_id: str, digest: str, response: bytes) -> None:
        self._answers[request_id] = (digest, response)
        while len(self._answers) > self.capacity:
            self._answers.popitem(last=False)


class Room:
    def __init__(
        self,
        *,
        room_id: str,
        visit_id: str,
        patient_id: str,
        clinician_id: str,
        admitted: bool,
        recording: bool,
        close_reason: int,
        settings: SignalingSettings,
    ) -> None:
        self.room_id = room_id
        self.visit_id = visit_id
        self.traceparent = ""  # the visit's trace, from the participants' join tokens
        # When the clinician admitted the patient (monotonic), until the call connects:
        # the call set-up time metric.
        self.admitted_at: float | None = None
        self.admitted = admitted
        self.recording = recording
        self.close_reason = close_reason
        self.keepalive_seconds = settings.keepalive_seconds
        self.recent = RecentRequests()
        self.participants = {
            role: Participant(
                user_id,
                EventLog(settings.replay_buffer_events),
                TokenBucket(settings.rate_per_second, settings.rate_burst),
            )
            for role, user_id in ((PATIENT, patient_id), (CLINICIAN, clinician_id))
        }

    @property
    def closed(self) -> bool:
        return self.close_reason != signaling_pb2.ROOM_CLOSE_REASON_UNSPECIFIED

    def role_of(self, principal: Principal) -> Role:
        """The caller's role in this room; PermissionDenied when they are not in it."""
        role = ROLES_BY_NAME.get(principal.role)
        if role is None or self.participants[role].user_id != principal.subject:
            raise PermissionDenied("NOT_A_PARTICIPANT", "the caller is not in this room")
        return role

    def user_id(self, role: Role) -> str:
        return self.participants[role].user_id

    # --- events -----------------------------------------------------------------

    def emit(self, to_role: Role, event: signaling_pb2.JoinRoomResponse) -> None:
        """Appends `event` to one participant's log and wakes their stream."""
        participant = self.participants[to_role]
        event.event_time.CopyFrom(now_timestamp())
        participant.log.append(event)
        if participant.subscription is not None:
            participant.subscription.wake.set()

    def emit_both(self, **event: object) -> None:
        """The same event to both participants (admitted, recording, room closed)."""
        for role in (PATIENT, CLINICIAN):
            self.emit(role, signaling_pb2.JoinRoomResponse(**event))  # type: ignore[arg-type]

    # --- streams ----------------------------------------------------------------

    def subscribe(
        self, role: Role, resume_after: int
    ) -> tuple[Subscription, signaling_pb2.JoinRoomResponse, list[signaling_pb2.JoinRoomResponse]]:
        """Opens a stream for `role`: returns it, the `joined` header and the replay.

        A newer stream replaces an older one of the same participant (a client that
        lost its connection rejoins before the server noticed).
        """
        participant = self.participants[role]
        replaced = participant.subscription
        if replaced is not None:
            replaced.superseded = True
            replaced.wake.set()
        replay = participant.log.replay_after(resume_after)
        subscription = Subscription(participant.log.last_sequence)
        participant.subscription = subscription
        peer = self.participants[other(role)]
        joined = signaling_pb2.JoinRoomResponse(
            sequence=replay.start_after,
            event_time=now_timestamp(),
            joined=signaling_pb2.Joined(
                room_id=self.room_id,
                visit_id=self.visit_id,
                role=role,
                polite=role == PATIENT,
                admitted=self.admitted,
                peer_present=peer.present,
                recording=self.recording,
                resume_gap=replay.gap,
            ),
        )
        self.emit(
            other(role),
            signaling_pb2.JoinRoomResponse(peer_joined=signaling_pb2.PeerJoined(role=role)),
        )
        return subscription, joined, replay.events

    def unsubscribe(self, role: Role, subscription: Subscription) -> bool:
        """Ends a stream; True when the participant is now gone (not replaced)."""
        participant = self.participants[role]
        if participant.subscription is not subscription:
            return False
        participant.subscription = None
        participant.connection_state = signaling_pb2.CONNECTION_STATE_UNSPECIFIED
        if not self.closed:
            self.emit(
                other(role),
                signaling_pb2.JoinRoomResponse(peer_left=signaling_pb2.PeerLeft(role=role)),
            )
        return True

    def leave(self, role: Role) -> bool:
        """Ends the participant's stream as a departure; True when they were present."""
        participant = self.participants[role]
        subscription = participant.subscription
        if subscription is None:
            participant.connection_state = signaling_pb2.CONNECTION_STATE_UNSPECIFIED
            return False
        subscription.left = True
        subscription.wake.set()
        return self.unsubscribe(role, subscription)

    def drain(self) -> None:
        """Ends every stream of the room with UNAVAILABLE (the process is stopping)."""
        for participant in self.participants.values():
            if participant.subscription is not None:
                participant.subscription.draining = True
                participant.subscription.wake.set()

    def both_connected(self) -> bool:
        return all(
            p.connection_state == signaling_pb2.CONNECTION_STATE_CONNECTED
            for p in self.participants.values()
        )

    async def stream(
        self, role: Role, subscription: Subscription
    ) -> AsyncIterator[signaling_pb2.JoinRoomResponse]:
        """Live events for `role` after what the subscription has delivered."""
        log = self.participants[role].log
        keepalive = self.keepalive_seconds
        last_sent = time.monotonic()
        while True:
            if subscription.superseded:
                raise Aborted("STREAM_SUPERSEDED", "a newer stream of this participant took over")
            if subscription.left:
                return
            if subscription.draining:
                raise Unavailable("DRAINING", "the service is restarting; resume the stream")
            pending = log.events_after(subscription.delivered)
            if pending is None:
                # The client fell further behind than the buffer holds: it resumes.
                raise Aborted("STREAM_LAGGING", "the stream fell behind; resume to continue")
            for event in pending:
                subscription.delivered = event.sequence
                yield event
                if event.WhichOneof("event") == "room_closed":
                    return
            if pending:
                last_sent = time.monotonic()
                continue
            subscription.wake.clear()
            if (
                log.last_sequence > subscription.delivered
                or subscription.superseded
                or subscription.left
                or subscription.draining
            ):
                continue
            wait = keepalive - (time.monotonic() - last_sent)
            if wait > 0:
                try:
                    async with asyncio.timeout(wait):  # no extra task per wait
                        await subscription.wake.wait()
                    continue
                except TimeoutError:
                    pass
            last_sent = time.monotonic()
            yield signaling_pb2.JoinRoomResponse(
                sequence=subscription.delivered,
                event_time=now_timestamp(),
                keepalive=signaling_pb2.Keepalive(),
            )
