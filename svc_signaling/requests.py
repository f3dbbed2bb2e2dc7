"""Input checks for uplink messages: allow-listed types and capped sizes.

SDP and candidates are checked for shape and size only; their content (which holds IP
addresses) is never logged or put in an error message.
"""

from __future__ import annotations

import math
from typing import Protocol

from svc_signaling.event_log import MAX_SEQUENCE
from svc_signaling.settings import SignalingSettings
from telemesh.signaling.v1 import signaling_pb2
from telemesh.validation import Violations

RELAYED_SDP_TYPES = frozenset(
    {
        signaling_pb2.SDP_TYPE_OFFER,
        signaling_pb2.SDP_TYPE_ANSWER,
        signaling_pb2.SDP_TYPE_PRANSWER,
        signaling_pb2.SDP_TYPE_ROLLBACK,
    }
)
REPORTED_STATES = frozenset(
    {
        signaling_pb2.CONNECTION_STATE_CONNECTING,
        signaling_pb2.CONNECTION_STATE_CONNECTED,
        signaling_pb2.CONNECTION_STATE_DISCONNECTED,
        signaling_pb2.CONNECTION_STATE_FAILED,
        signaling_pb2.CONNECTION_STATE_CLOSED,
    }
)
MAX_ROOM_ID = 64
MAX_MID = 64
MAX_UFRAG = 256
MAX_MLINE_INDEX = 1023


class RoomCall(Protocol):
    """An uplink call about a room: every one carries these two."""

    @property
    def request_id(self) -> str: ...

    @property
    def room_id(self) -> str: ...


def room_call(request: RoomCall) -> Violations:
    """The checks every room call starts with (request_id, room_id); add the call's own,
    then `raise_if_any()`."""
    check = Violations()
    check.uuid("request_id", request.request_id)
    if check.required("room_id", request.room_id):
        check.max_length("room_id", request.room_id, MAX_ROOM_ID)
    return check


def resume_after(check: Violations, value: int) -> None:
    """The last event number a rejoining client saw (0 for a fresh join)."""
    check.in_range("resume_after_sequence", value, 0, MAX_SEQUENCE)


def description(
    check: Violations,
    field: str,
    value: signaling_pb2.SessionDescription,
    settings: SignalingSettings,
    allowed: frozenset[int] = RELAYED_SDP_TYPES,
) -> None:
    if value.type not in allowed:
        check.add(f"{field}.type", "is not an allowed session description type")
        return
    size = len(value.sdp.encode())
    if value.type == signaling_pb2.SDP_TYPE_ROLLBACK:
        check.check(size == 0, f"{field}.sdp", "must be empty for a rollback")
        return
    if not check.required(f"{field}.sdp", value.sdp):
        return
    if size > settings.max_sdp_bytes:
        check.add(f"{field}.sdp", f"must be at most {settings.max_sdp_bytes} bytes")
    elif not value.sdp.startswith("v=0"):
        check.add(f"{field}.sdp", "is not SDP (must start with v=0)")


def candidates(
    check: Violations, values: list[signaling_pb2.IceCandidate], settings: SignalingSettings
) -> None:
    limit = settings.max_candidates_per_batch
    if not 1 <= len(values) <= limit:
        check.add("candidates", f"must hold 1 to {limit} candidates")
        return
    for index, candidate in enumerate(values):
        field = f"candidates[{index}]"
        line = candidate.candidate
        if len(line.encode()) > settings.max_candidate_bytes:
            check.add(f"{field}.candidate", f"must be at most {settings.max_candidate_bytes} bytes")
        elif line and not line.startswith("candidate:"):
            check.add(f"{field}.candidate", "must start with 'candidate:' (or be empty)")
        check.max_length(f"{field}.sdp_mid", candidate.sdp_mid, MAX_MID)
        check.max_length(f"{field}.username_fragment", candidate.username_fragment, MAX_UFRAG)
        check.check(
            0 <= candidate.sdp_mline_index <= MAX_MLINE_INDEX,
            f"{field}.sdp_mline_index",
            f"must be 0 to {MAX_MLINE_INDEX}",
        )


def quality(check: Violations, value: signaling_pb2.CallQuality) -> None:
    # Finite too: an infinity would poison the metrics' sums for good (NaN fails >= 0).
    for name, number in (
        ("round_trip_time_ms", value.round_trip_time_ms),
        ("jitter_ms", value.jitter_ms),
    ):
        check.check(0 <= number < math.inf, f"quality.{name}", "must be >= 0 and finite")
    check.check(0 <= value.fraction_lost <= 1, "quality.fraction_lost", "must be 0 to 1")
    check.check(value.frames_received >= 0, "quality.frames_received", "must be >= 0")
    check.check(value.audio_packets_received >= 0, "quality.audio_packets_received", "must be >= 0")


# --- whole requests: each raises INVALID_ARGUMENT with every bad field ------------------


def join(request: signaling_pb2.JoinRoomRequest) -> None:
    check = Violations()
    check.required("join_token", request.join_token)
    resume_after(check, request.resume_after_sequence)
    check.raise_if_any()


def room_only(request: RoomCall) -> None:
    """A room call with nothing but the request and room ids."""
    room_call(request).raise_if_any()


def session_description(
    request: signaling_pb2.SendSessionDescriptionRequest, settings: SignalingSettings
) -> None:
    check = room_call(request)
    description(check, "description", request.description, settings)
    check.raise_if_any()


def ice_candidates(
    request: signaling_pb2.SendIceCandidatesRequest, settings: SignalingSettings
) -> None:
    check = room_call(request)
    candidates(check, list(request.candidates), settings)
    check.raise_if_any()


def connection_report(request: signaling_pb2.ReportConnectionStateRequest) -> None:
    check = room_call(request)
    check.check(request.state in REPORTED_STATES, "state", "is not a connection state")
    check.raise_if_any()


def quality_report(request: signaling_pb2.ReportCallQualityRequest) -> None:
    check = room_call(request)
    quality(check, request.quality)
    check.raise_if_any()


def precall_start(
    request: signaling_pb2.StartPreCallCheckRequest, settings: SignalingSettings
) -> None:
    check = Violations()
    check.uuid("request_id", request.request_id)
    description(
        check, "offer", request.offer, settings, allowed=frozenset({signaling_pb2.SDP_TYPE_OFFER})
    )
    check.raise_if_any()


def precall_id(request: signaling_pb2.GetPreCallCheckRequest) -> str:
    check = Violations()
    check.required("check_id", request.check_id)
    check.raise_if_any()
    return request.check_id


# Why the session service may close a room: the visit is over.
ENDINGS = frozenset(
    {
        signaling_pb2.ROOM_CLOSE_REASON_VISIT_ENDED,
        signaling_pb2.ROOM_CLOSE_REASON_VISIT_CANCELLED,
        signaling_pb2.ROOM_CLOSE_REASON_NO_SHOW,
    }
)


def room_closing(request: signaling_pb2.CloseRoomRequest) -> tuple[str, int]:
    """The visit whose room closes, and why."""
    check = Violations()
    check.required("visit_id", request.visit_id)
    check.check(
        request.reason in ENDINGS, "reason", "must be VISIT_ENDED, VISIT_CANCELLED or NO_SHOW"
    )
    check.raise_if_any()
    return request.visit_id, request.reason
