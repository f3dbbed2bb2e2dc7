"""Signaling's parts without its process: the room registry against a real database (a
closed room leaves memory, and a later call finds it closed again), and how any relay
of its outbox settles a connection event."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import cast

import grpc
import pytest

from svc_signaling.join_tokens import JoinClaims
from svc_signaling.models import locked_record
from svc_signaling.registry import RoomRegistry
from svc_signaling.rooms import Room
from svc_signaling.settings import SignalingSettings
from telemesh.db import Database
from telemesh.outbox import RECORD_CONNECTION_EVENT, OutboxEvent, grpc_deliverer
from telemesh.signaling.v1 import signaling_pb2
from tests.support.harness import migrated_database
from tests.support.polling import eventually

GRACE = 0.05
SETTINGS = dataclasses.replace(SignalingSettings(), closed_room_seconds=GRACE)


@pytest.fixture
async def db(backend: str, tmp_path: Path) -> AsyncIterator[Database]:
    async with migrated_database(backend, tmp_path, "signaling") as database:
        yield database


async def _close(registry: RoomRegistry, db: Database, room: Room) -> None:
    """Closes a room as the service does (record first, then memory) and retires it."""
    async with db.write() as session:
        await locked_record(session, room.room_id, close_reason="ROOM_CLOSE_REASON_VISIT_ENDED")
    room.close_reason = signaling_pb2.ROOM_CLOSE_REASON_VISIT_ENDED
    registry.retire(room)


async def _left_memory(registry: RoomRegistry, room: Room) -> None:
    async def gone() -> bool:
        return registry.cached_room(room.room_id) is None

    await eventually(gone, 5.0, GRACE / 5)


async def test_a_closed_room_leaves_memory_after_its_grace_period(db: Database) -> None:
    registry = RoomRegistry(db, SETTINGS)
    room = await registry.for_join(JoinClaims("p-1", "patient", "v-1", "p-1", "c-1"))
    await _close(registry, db, room)
    assert registry.cached_room(room.room_id) is room, "kept through the grace period"
    await _left_memory(registry, room)


async def test_a_closed_room_read_again_comes_back_closed_and_leaves_again(db: Database) -> None:
    registry = RoomRegistry(db, SETTINGS)
    room = await registry.for_join(JoinClaims("p-1", "patient", "v-1", "p-1", "c-1"))
    await _close(registry, db, room)
    await _left_memory(registry, room)

    again = await registry.get(room.room_id)
    assert again is not room
    assert again.close_reason == signaling_pb2.ROOM_CLOSE_REASON_VISIT_ENDED
    assert await registry.of_visit("v-1") is again
    await _left_memory(registry, again)


async def test_an_open_room_stays_in_memory(db: Database) -> None:
    registry = RoomRegistry(db, SETTINGS)
    room = await registry.for_join(JoinClaims("c-1", "clinician", "v-2", "p-1", "c-1"))
    # A room closed after it was opened leaves memory after its grace period; had the
    # open room been meant to leave too, its turn would have come first.
    closed = await registry.for_join(JoinClaims("c-1", "clinician", "v-3", "p-1", "c-1"))
    await _close(registry, db, closed)
    await _left_memory(registry, closed)
    assert registry.cached_room(room.room_id) is room


def _refusing(code: grpc.StatusCode) -> Callable[[str], grpc.aio.Channel]:
    """Channels whose every call fails with `code`."""

    async def call(payload: bytes, **options: object) -> None:
        raise grpc.aio.AioRpcError(code, grpc.aio.Metadata(), grpc.aio.Metadata(), "refused")

    channel = SimpleNamespace(unary_unary=lambda *args, **kwargs: call)
    return lambda target: cast(grpc.aio.Channel, channel)


def _event(target: str, method: str) -> OutboxEvent:
    now = datetime.now(UTC)
    return OutboxEvent(
        event_id="e-1",
        target=target,
        method=method,
        key="k",
        payload=b"",
        create_time=now,
        next_attempt_time=now,
    )


async def test_a_connection_event_for_a_visit_no_longer_in_progress_is_settled() -> None:
    # Every relay of signaling's outbox (the service's own, or a standalone
    # `python -m telemesh.outbox_relay --service signaling`) delivers with grpc_deliverer.
    event = _event("session", RECORD_CONNECTION_EVENT)
    await grpc_deliverer(_refusing(grpc.StatusCode.FAILED_PRECONDITION))(event)
    with pytest.raises(grpc.aio.AioRpcError):
        await grpc_deliverer(_refusing(grpc.StatusCode.UNAVAILABLE))(event)
    other = _event("billing", "/x.v1.X/Y")
    with pytest.raises(grpc.aio.AioRpcError):
        await grpc_deliverer(_refusing(grpc.StatusCode.FAILED_PRECONDITION))(other)
