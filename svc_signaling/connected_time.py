"""The visit's connected time: when both participants are connected, and when not.

The session service counts connected periods. We open one when both participants
report CONNECTED and close it when either reports disconnected, failed or closed,
leaves, or loses its stream. The room's open period is durable (`connected_since`)
and each change reaches the session service through the outbox, written in the same
transaction, so it is delivered even across a crash.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlmodel.ext.asyncio.session import AsyncSession

from svc_signaling.models import locked_record
from svc_signaling.rooms import Room
from svc_signaling.session_link import enqueue_connection_event


async def settle(
    session: AsyncSession,
    room: Room,
    *,
    ending: bool,
    when: datetime | None = None,
    connected: bool | None = None,
) -> None:
    """Opens or closes the room's connected period to match its participants.

    `ending` says the change that led here can end a period (a disconnect, a departure);
    a participant still connecting does not. `connected` overrides whether both
    participants count as connected (False: the room is closing with this transaction).
    """
    record = await locked_record(session, room.room_id)
    both_connected = room.both_connected() if connected is None else connected
    now = when or datetime.now(UTC)
    if record.connected_since is None and both_connected:
        record.connected_since = now
        enqueue_connection_event(
            session,
            visit_id=room.visit_id,
            connected=True,
            when=now,
            period=f"{room.room_id}@{now.isoformat()}",
        )
    elif record.connected_since is not None and ending and not both_connected:
        enqueue_connection_event(
            session,
            visit_id=room.visit_id,
            connected=False,
            when=now,
            period=f"{room.room_id}@{record.connected_since.isoformat()}",
        )
        record.connected_since = None
    else:
        return
    record.update_time = now
    session.add(record)
