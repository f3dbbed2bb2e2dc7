"""The signaling service's tables (its own database; no other service reads them).

A room's membership, admission and recording state are durable, so that a restarted
process still knows who may join and whether the patient was admitted. Its events and
replay buffers live in memory (svc_signaling.rooms).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlmodel import Field, SQLModel
from sqlmodel.ext.asyncio.session import AsyncSession

from telemesh.db_types import UtcDateTime
from telemesh.errors import NotFound
from telemesh.idempotency import IdempotencyRecord
from telemesh.outbox import OutboxEvent

metadata = SQLModel.metadata


class RoomRecord(SQLModel, table=True):
    __tablename__ = "rooms"

    room_id: str = Field(primary_key=True, max_length=64)
    visit_id: str = Field(max_length=64, unique=True)
    patient_id: str = Field(max_length=100, index=True)
    clinician_id: str = Field(max_length=100)
    admitted: bool = False
    recording: bool = False
    # When the connected period we opened in the session service began; None while the
    # call is not counted as connected.
    connected_since: datetime | None = Field(default=None, sa_type=UtcDateTime)
    # Empty while open; else a RoomCloseReason name.
    close_reason: str = Field(default="", max_length=40)
    create_time: datetime = Field(sa_type=UtcDateTime)
    update_time: datetime = Field(sa_type=UtcDateTime)
    # The replica whose streams serve the room (svc_signaling.room_hosts); empty: none yet.
    host_id: str = Field(default="", max_length=32, sa_column_kwargs={"server_default": ""})


class ReplicaRecord(SQLModel, table=True):
    """A signaling replica, alive while `alive_until` is ahead (it renews it)."""

    __tablename__ = "signaling_replicas"

    replica_id: str = Field(primary_key=True, max_length=32)
    alive_until: datetime = Field(sa_type=UtcDateTime)


async def locked_record(session: AsyncSession, room_id: str, **changes: Any) -> RoomRecord:
    """The room's record, locked until the transaction ends, with `changes` applied."""
    record = await session.get(RoomRecord, room_id, with_for_update=True)
    if record is None:
        raise NotFound("room", room_id)
    if changes:
        for name, value in changes.items():
            setattr(record, name, value)
        session.add(record)
    return record


__all__ = [
    "IdempotencyRecord",
    "OutboxEvent",
    "ReplicaRecord",
    "RoomRecord",
    "locked_record",
    "metadata",
]
