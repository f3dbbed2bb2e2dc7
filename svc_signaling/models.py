"""The signaling service's tables (its own database; no other service reads them).

A room's membership, admission and recording state are durable, so that a restarted
process still knows who may join and whether the patient was admitted. Its events and
replay buffers live in memory (svc_signaling.rooms).
"""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Field, SQLModel

from telemesh.db_types import UtcDateTime
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


__all__ = ["IdempotencyRecord", "OutboxEvent", "RoomRecord", "metadata"]
