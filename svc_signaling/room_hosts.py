"""Which signaling replica serves a room: the one its participants' streams are on.

With several replicas the mesh sends every call about a visit to one replica (a hash on
the visit id). When that replica dies, its rooms' participants rejoin and the mesh
retries them on another replica, which takes the rooms over. When the dead replica comes
back the hash points to it again while the streams stay where they are, and a message
it took would reach nobody. So a replica serves a room's calls only when it holds the room
or no live replica does; otherwise it answers UNAVAILABLE `ROOM_ELSEWHERE` and the mesh
retries the call on another replica (Envoy's retry on `unavailable` to another host).

Each replica renews its row in `signaling_replicas` (`alive_until`) every
`HEARTBEAT_SECONDS`; a room names its holder (`rooms.host_id`), which is live while its
`alive_until` is ahead. A replica that stops deletes its row, so others take its rooms at
once; one that dies is passed over after `ALIVE_SECONDS`. On SQLite (one replica, one
writer) none of this runs.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy import ColumnElement, and_, delete, exists, update
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from svc_signaling.models import ReplicaRecord, RoomRecord
from telemesh.db import Database
from telemesh.errors import Unavailable

HEARTBEAT_SECONDS = 0.5
ALIVE_SECONDS = 1.5


def _elsewhere(room_id: str) -> Unavailable:
    return Unavailable(
        "ROOM_ELSEWHERE", "another replica serves this room; retry", {"room_id": room_id}
    )


class RoomHosts:
    def __init__(self, db: Database, replica_id: str | None = None) -> None:
        self.db = db
        self.enabled = not db.sqlite
        self.replica_id = replica_id or uuid.uuid4().hex
        # Rooms this replica holds (renewed with every heartbeat from the database).
        self._held: set[str] = set()

    def _live_holder(self, now: datetime) -> ColumnElement[bool]:
        """A room's holder is another replica that is alive now."""
        return and_(
            col(RoomRecord.host_id) != "",
            col(RoomRecord.host_id) != self.replica_id,
            exists().where(
                col(ReplicaRecord.replica_id) == col(RoomRecord.host_id),
                col(ReplicaRecord.alive_until) > now,
            ),
        )

    async def heartbeat(self) -> None:
        """Renews this replica's life and re-reads the rooms it holds."""
        if not self.enabled:
            return
        now = datetime.now(UTC)

        async def renew(session: AsyncSession) -> set[str]:
            alive_until = now + timedelta(seconds=ALIVE_SECONDS)
            record = await session.get(ReplicaRecord, self.replica_id)
            if record is None:
                session.add(ReplicaRecord(replica_id=self.replica_id, alive_until=alive_until))
            else:
                record.alive_until = alive_until
                session.add(record)
            held = await session.exec(
                select(RoomRecord.room_id).where(col(RoomRecord.host_id) == self.replica_id)
            )
            return set(held.all())

        self._held = await self.db.run_write(renew)

    async def hold(self, room_id: str) -> None:
        """Takes the room for this replica (a participant's stream opens here), unless a
        live replica holds it: then UNAVAILABLE ROOM_ELSEWHERE."""
        if not self.enabled or room_id in self._held:
            return
        now = datetime.now(UTC)

        async def take(session: AsyncSession) -> int:
            taken = await session.exec(
                update(RoomRecord)
                .where(col(RoomRecord.room_id) == room_id)
                .where(~self._live_holder(now))
                .values(host_id=self.replica_id)
            )
            return int(taken.rowcount)

        if await self.db.run_write(take) != 1:
            raise _elsewhere(room_id)
        self._held.add(room_id)

    async def check(self, room_id: str) -> None:
        """A call about the room may be served here: this replica holds it, or no live
        replica does."""
        if not self.enabled or room_id in self._held:
            return
        now = datetime.now(UTC)
        async with self.db.read() as session:
            elsewhere = await session.exec(
                select(RoomRecord.room_id)
                .where(col(RoomRecord.room_id) == room_id)
                .where(self._live_holder(now))
            )
            if elsewhere.first() is not None:
                raise _elsewhere(room_id)

    async def start(self) -> None:
        await self.heartbeat()

    async def stop(self) -> None:
        """Leaves the fleet: others take this replica's rooms without waiting."""
        if not self.enabled:
            return

        async def leave(session: AsyncSession) -> None:
            await session.exec(
                delete(ReplicaRecord).where(col(ReplicaRecord.replica_id) == self.replica_id)
            )

        await self.db.run_write(leave)
