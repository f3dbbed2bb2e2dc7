"""Telling signaling that a visit is over, so its room closes for good.

The close travels through the outbox, written in the same transaction as the visit's
last transition: the room closes whatever crashes in between, and CloseRoom takes a
repeat calmly.
"""

from __future__ import annotations

import uuid

from sqlmodel.ext.asyncio.session import AsyncSession

from svc_session.models import VisitRow
from telemesh.outbox import enqueue
from telemesh.signaling.v1 import signaling_pb2

CLOSE_ROOM = "/telemesh.signaling.v1.SignalingService/CloseRoom"


def close_room(
    session: AsyncSession, visit: VisitRow, reason: signaling_pb2.RoomCloseReason.ValueType
) -> None:
    request = signaling_pb2.CloseRoomRequest(
        # The same visit and reason always make the same request id.
        request_id=str(
            uuid.uuid5(uuid.NAMESPACE_URL, f"telemesh:close-room:{visit.visit_id}:{reason}")
        ),
        visit_id=visit.visit_id,
        reason=reason,
    )
    enqueue(
        session,
        target="signaling",
        method=CLOSE_ROOM,
        key=visit.visit_id,
        payload=request.SerializeToString(),
        traceparent=visit.traceparent,
    )
