"""A room's life outside the calls that use it: closing (the visit ended, consent was
revoked), recording switched off, connected periods settled, and what a restart
interrupted. The servicer and the app's background jobs both act through `RoomLife`."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import datetime

from sqlmodel.ext.asyncio.session import AsyncSession

from svc_signaling import convert
from svc_signaling.connected_time import settle
from svc_signaling.consent_link import RECORDING, TELEHEALTH, ConsentLink
from svc_signaling.models import locked_record
from svc_signaling.registry import RoomRegistry
from svc_signaling.rooms import CLINICIAN, PATIENT, Room
from telemesh.db import Database
from telemesh.logs import log
from telemesh.signaling.v1 import signaling_pb2

logger = logging.getLogger("telemesh.signaling")


class RoomLife:
    def __init__(
        self,
        db: Database,
        registry: RoomRegistry,
        consent: ConsentLink,
        outbox_committed: Callable[[], None],
        reconnect_grace_seconds: float,
    ) -> None:
        self.db = db
        self.registry = registry
        self.consent = consent
        self.outbox_committed = outbox_committed
        self.reconnect_grace_seconds = reconnect_grace_seconds

    async def settle(self, room: Room, *, ending: bool, when: datetime | None = None) -> None:
        async def work(session: AsyncSession) -> None:
            await settle(session, room, ending=ending, when=when)

        await self.db.run_write(work)
        self.outbox_committed()

    def apply_recording(self, room: Room, recording: bool) -> None:
        if room.recording != recording:
            room.recording = recording
            room.emit_both(recording_changed=signaling_pb2.RecordingChanged(recording=recording))

    async def consent_withdrawn(self, patient_id: str, category: int) -> None:
        """A consent stopped permitting: close the patient's rooms or stop recording."""
        if category not in (TELEHEALTH, RECORDING):
            return
        if await self.consent.is_permitted(patient_id, category):
            return  # another version still permits (a re-grant raced the change)
        for room in await self.registry.of_patient(patient_id):
            if category == TELEHEALTH:
                await self.close(room, signaling_pb2.ROOM_CLOSE_REASON_CONSENT_REVOKED)
            elif room.recording:
                await self._write_recording_off(room)
                self.apply_recording(room, False)

    async def _write_recording_off(self, room: Room) -> None:
        async def work(session: AsyncSession) -> None:
            await locked_record(session, room.room_id, recording=False)

        await self.db.run_write(work)

    async def close(self, room: Room, reason: int) -> None:
        if room.closed:
            return

        name = convert.close_reason_name(reason)

        async def work(session: AsyncSession) -> None:
            await locked_record(session, room.room_id, close_reason=name, recording=False)
            # The call ends with the room: its connected period closes in the same write.
            await settle(session, room, ending=True, connected=False)

        await self.db.run_write(work)
        self.outbox_committed()
        room.close_reason = reason
        room.recording = False
        room.emit_both(room_closed=signaling_pb2.RoomClosed(reason=reason))  # type: ignore[arg-type]
        for role in (PATIENT, CLINICIAN):
            room.participants[role].connection_state = signaling_pb2.CONNECTION_STATE_CLOSED
        self.registry.retire(room)
        log(
            logger,
            logging.INFO,
            "room closed",
            room_id=room.room_id,
            visit_id=room.visit_id,
            reason=name,
        )

    async def settle_after_restart(self, started: datetime) -> None:
        """Closes connected periods that a restart interrupted and nobody resumed."""
        await asyncio.sleep(self.reconnect_grace_seconds)
        for room in await self.registry.with_open_period():
            if not room.both_connected():
                await self.settle(room, ending=True, when=started)
