"""What signaling sends: the events a room relays to a participant and the answers of
its calls, built from plain values (SDP and candidates pass through untouched)."""

from __future__ import annotations

from collections.abc import Sequence

from svc_signaling.rooms import Role
from telemesh.signaling.v1 import signaling_pb2

P = signaling_pb2


def description_received(sender: Role, description: P.SessionDescription) -> P.JoinRoomResponse:
    """The other participant's offer, answer or rollback."""
    return P.JoinRoomResponse(
        session_description=P.SessionDescriptionReceived(from_role=sender, description=description)
    )


def candidates_received(sender: Role, candidates: Sequence[P.IceCandidate]) -> P.JoinRoomResponse:
    """The other participant's ICE candidates."""
    return P.JoinRoomResponse(
        ice_candidates=P.IceCandidatesReceived(from_role=sender, candidates=candidates)
    )


def precall_started(check_id: str, answer_sdp: str) -> P.StartPreCallCheckResponse:
    return P.StartPreCallCheckResponse(
        check_id=check_id, answer=P.SessionDescription(type=P.SDP_TYPE_ANSWER, sdp=answer_sdp)
    )


def close_reason_name(reason: int) -> str:
    """A room's close reason as the API names it (ROOM_CLOSE_REASON_...)."""
    return P.RoomCloseReason.Name(P.RoomCloseReason.ValueType(reason))
