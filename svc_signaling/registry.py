"""The rooms this process serves: durable records, and their live state in memory.

A room is created by its visit's first join (one per visit, enforced by a unique
visit id) with an unguessable id. A restarted process loads a room's record on first
use, so admission and recording survive; its event logs start empty. A closed room
leaves memory after a grace period (`closed_room_seconds`); a later call loads its
record again and gets the same closed answer.
"""

from __future__ import annotations

import asyncio
import secrets
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import exc
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from svc_signaling.join_tokens import JoinClaims
from svc_signaling.models import RoomRecord
from svc_signaling.rooms import Room
from svc_signaling.settings import SignalingSettings
from telemesh import metrics
from telemesh.db import Database
from telemesh.errors import NotFound
from telemesh.signaling.v1 import signaling_pb2


def close_reason_value(name: str) -> int:
    return signaling_pb2.RoomCloseReason.Value(name) if name else 0


class RoomRegistry:
    def __init__(self, db: Database, settings: SignalingSettings) -> None:
        self.db = db
        self.settings = settings
        self._rooms: dict[str, Room] = {}
        self._room_of_visit: dict[str, str] = {}
        self._loading = asyncio.Lock()
        # The open (not closed) rooms held here, for the rooms_open gauge.
        self._open: set[str] = set()

    def cached(self) -> list[Room]:
        return list(self._rooms.values())

    def cached_room(self, room_id: str) -> Room | None:
        """A room this process holds in memory (no database read)."""
        return self._rooms.get(room_id)

    def _adopt(self, record: RoomRecord) -> Room:
        room = self._rooms.get(record.room_id)
        if room is None:
            room = Room(
                room_id=record.room_id,
                visit_id=record.visit_id,
                patient_id=record.patient_id,
                clinician_id=record.clinician_id,
                admitted=record.admitted,
                recording=record.recording,
                close_reason=close_reason_value(record.close_reason),
                settings=self.settings,
            )
            self._rooms[room.room_id] = room
            self._room_of_visit[room.visit_id] = room.room_id
            if room.closed:
                self.retire(room)
            else:
                self._count_open(room, True)
        return room

    def retire(self, room: Room) -> None:
        """Drops a closed room from memory after the grace period."""
        self._count_open(room, False)
        asyncio.get_running_loop().call_later(self.settings.closed_room_seconds, self._forget, room)

    def _forget(self, room: Room) -> None:
        self._count_open(room, False)
        if self._rooms.get(room.room_id) is room:
            del self._rooms[room.room_id]
            del self._room_of_visit[room.visit_id]

    def _count_open(self, room: Room, is_open: bool) -> None:
        """Moves the rooms_open gauge when `room` opens here or closes (once each)."""
        if is_open == (room.room_id in self._open):
            return
        if is_open:
            self._open.add(room.room_id)
        else:
            self._open.discard(room.room_id)
        metrics.adjust(
            "telemesh.signaling.rooms_open",
            "Open rooms this signaling process holds",
            1 if is_open else -1,
        )

    async def _record_of_visit(self, visit_id: str) -> RoomRecord | None:
        async with self.db.read() as session:
            return (
                await session.exec(select(RoomRecord).where(col(RoomRecord.visit_id) == visit_id))
            ).first()

    async def _adopt_where(self, *conditions: Any) -> list[Room]:
        async with self.db.read() as session:
            records = (await session.exec(select(RoomRecord).where(*conditions))).all()
        return [self._adopt(record) for record in records]

    async def for_join(self, claims: JoinClaims) -> Room:
        """The visit's room, created on its first join."""
        room_id = self._room_of_visit.get(claims.visit_id)
        if room_id is not None:
            return self._rooms[room_id]
        async with self._loading:
            room_id = self._room_of_visit.get(claims.visit_id)
            if room_id is not None:
                return self._rooms[room_id]
            record = await self._record_of_visit(claims.visit_id)
            if record is None:
                record = await self._create(claims)
            return self._adopt(record)

    async def _create(self, claims: JoinClaims) -> RoomRecord:
        now = datetime.now(UTC)
        record = RoomRecord(
            room_id=secrets.token_urlsafe(24),
            visit_id=claims.visit_id,
            patient_id=claims.patient_id,
            clinician_id=claims.clinician_id,
            create_time=now,
            update_time=now,
        )

        async def insert(session: AsyncSession) -> RoomRecord:
            session.add(record)
            await session.flush()
            return record

        try:
            return await self.db.run_write(insert)
        except exc.IntegrityError:
            # Another replica created it first.
            found = await self._record_of_visit(claims.visit_id)
            if found is None:
                raise
            return found

    async def get(self, room_id: str) -> Room:
        """A room by id (uplink calls); NotFound when no such room exists."""
        room = self._rooms.get(room_id)
        if room is not None:
            return room
        async with self._loading:
            room = self._rooms.get(room_id)
            if room is not None:
                return room
            async with self.db.read() as session:
                record = await session.get(RoomRecord, room_id)
            if record is None:
                raise NotFound("room", room_id)
            return self._adopt(record)

    async def of_visit(self, visit_id: str) -> Room | None:
        """The visit's room, if it was ever opened."""
        room_id = self._room_of_visit.get(visit_id)
        if room_id is not None:
            return self._rooms[room_id]
        record = await self._record_of_visit(visit_id)
        return None if record is None else self._adopt(record)

    async def of_patient(self, patient_id: str) -> list[Room]:
        """The patient's open rooms (for consent changes)."""
        return await self._adopt_where(
            col(RoomRecord.patient_id) == patient_id, col(RoomRecord.close_reason) == ""
        )

    async def with_open_period(self) -> list[Room]:
        """Rooms whose call the session service counts as connected (after a restart)."""
        return await self._adopt_where(col(RoomRecord.connected_since).is_not(None))
