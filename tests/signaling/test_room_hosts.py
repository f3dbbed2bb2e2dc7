"""Which replica serves a room (svc_signaling.room_hosts), on the database replicas
share: the holder serves it, others answer ROOM_ELSEWHERE until the holder leaves or
stops renewing its life, and on SQLite (one replica) nothing is checked."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import update
from sqlmodel import col

from svc_signaling.models import ReplicaRecord, RoomRecord
from svc_signaling.room_hosts import RoomHosts
from telemesh.db import Database
from telemesh.errors import Unavailable
from tests.support.harness import migrated_database


async def _room(db: Database) -> str:
    room_id = uuid.uuid4().hex
    now = datetime.now(UTC)
    async with db.write() as session:
        session.add(
            RoomRecord(
                room_id=room_id,
                visit_id=uuid.uuid4().hex,
                patient_id="p-1",
                clinician_id="c-1",
                create_time=now,
                update_time=now,
            )
        )
    return room_id


async def _refused(work: Awaitable[None]) -> str:
    with pytest.raises(Unavailable) as caught:
        await work
    return caught.value.reason


@pytest.mark.postgres
async def test_the_holder_serves_a_room_and_others_send_its_calls_back(
    tmp_path: Path,
) -> None:
    async with migrated_database("postgres", tmp_path, "signaling") as db:
        room_id = await _room(db)
        first, second = RoomHosts(db), RoomHosts(db)
        for hosts in (first, second):
            await hosts.start()
        await first.hold(room_id)
        await first.check(room_id)
        assert await _refused(second.check(room_id)) == "ROOM_ELSEWHERE"
        assert await _refused(second.hold(room_id)) == "ROOM_ELSEWHERE"

        # A holder that stops renewing its life (it died) is passed over.
        async with db.write() as session:
            await session.exec(
                update(ReplicaRecord)
                .where(col(ReplicaRecord.replica_id) == first.replica_id)
                .values(alive_until=datetime.now(UTC) - timedelta(seconds=1))
            )
        await second.check(room_id)
        await second.hold(room_id)
        # Back from the dead, the first replica finds the room elsewhere.
        await first.heartbeat()
        assert await _refused(first.check(room_id)) == "ROOM_ELSEWHERE"

        # A holder that stops cleanly hands its rooms over at once.
        await second.stop()
        await first.hold(room_id)
        await first.stop()


async def test_one_replica_on_sqlite_checks_nothing(tmp_path: Path) -> None:
    async with migrated_database("sqlite", tmp_path, "signaling") as db:
        room_id = await _room(db)
        first, second = RoomHosts(db), RoomHosts(db)
        assert not first.enabled
        await first.start()
        await first.hold(room_id)
        await second.check(room_id)
        await second.hold(room_id)
