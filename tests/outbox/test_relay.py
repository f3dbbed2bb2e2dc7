"""The outbox relay against a real database: delivery, retries, dead letters, leases."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest

from telemesh.db import Database
from telemesh.outbox import OutboxEvent, OutboxRelay, RelaySettings, backlog, enqueue
from tests.support.harness import migrated_database


@pytest.fixture
async def db(backend: str, tmp_path: Path) -> AsyncIterator[Database]:
    async with migrated_database(
        backend, tmp_path, "session"
    ) as database:  # the outbox table comes with the session schema
        yield database


async def _enqueue(db: Database, *keys: str) -> None:
    async with db.write() as session:
        for key in keys:
            enqueue(session, target="billing", method="/x.v1.X/Y", key=key, payload=key.encode())


def _rpc_error(code: grpc.StatusCode) -> grpc.aio.AioRpcError:
    return grpc.aio.AioRpcError(code, grpc.aio.Metadata(), grpc.aio.Metadata(), details="refused")


async def test_every_event_is_delivered_and_failures_are_retried(db: Database) -> None:
    await _enqueue(db, *(f"k{n}" for n in range(20)))
    seen: list[str] = []
    failures = {"k3": 2, "k7": 1}  # these fail transiently first

    async def deliver(event: OutboxEvent) -> None:
        if failures.get(event.key, 0) > 0:
            failures[event.key] -= 1
            raise _rpc_error(grpc.StatusCode.UNAVAILABLE)
        seen.append(event.key)

    relay = OutboxRelay(db, deliver, RelaySettings(poll_seconds=0.05))
    await relay.start()
    try:
        for _ in range(200):
            if await backlog(db) == (0, 0):
                break
            await asyncio.sleep(0.05)
    finally:
        await relay.stop()
    assert sorted(seen) == sorted(f"k{n}" for n in range(20))


async def test_a_refused_event_becomes_a_dead_letter(db: Database) -> None:
    await _enqueue(db, "bad", "good")
    attempts: dict[str, int] = {}

    async def deliver(event: OutboxEvent) -> None:
        attempts[event.key] = attempts.get(event.key, 0) + 1
        if event.key == "bad":
            raise _rpc_error(grpc.StatusCode.INVALID_ARGUMENT)

    relay = OutboxRelay(db, deliver, RelaySettings(poll_seconds=0.05))
    for _ in range(5):
        await relay.drain_once()
        await asyncio.sleep(0.05)
    assert attempts == {"bad": 1, "good": 1}, "a dead letter is not retried"
    assert await backlog(db) == (0, 1)


async def test_a_relay_that_dies_mid_batch_leaves_its_events_to_another(db: Database) -> None:
    await _enqueue(db, "a", "b")
    delivered: list[str] = []

    async def deliver(event: OutboxEvent) -> None:
        delivered.append(event.key)

    crashed = OutboxRelay(db, deliver, RelaySettings(lease_seconds=0.5))
    claimed = await crashed._claim()  # claims, then "dies" before delivering
    assert {e.key for e in claimed} == {"a", "b"}
    other = OutboxRelay(db, deliver, RelaySettings(lease_seconds=0.5))
    assert await other.drain_once() == 0, "leased events are not delivered twice at once"
    await asyncio.sleep(0.6)
    assert await other.drain_once() == 2
    assert sorted(delivered) == ["a", "b"]


async def test_a_target_that_is_down_does_not_hold_up_the_others(db: Database) -> None:
    async with db.write() as session:
        for n in range(10):
            enqueue(session, target="signaling", method="/x.v1.X/Close", key=f"s{n}", payload=b"")
            enqueue(session, target="billing", method="/x.v1.X/Charge", key=f"b{n}", payload=b"")
    tried: list[str] = []

    async def deliver(event: OutboxEvent) -> None:
        tried.append(event.target)
        if event.target == "signaling":
            raise _rpc_error(grpc.StatusCode.UNAVAILABLE)

    relay = OutboxRelay(db, deliver, RelaySettings(concurrency=1))
    assert await relay.drain_once() == 10, "every billing event went through"
    assert tried.count("signaling") == 1, "an unreachable target is tried once per batch"
    assert await backlog(db, "signaling") == (10, 0), "its events wait for their next attempt"
    # The next claims leave the unreachable target out for a while: no attempt at all.
    async with db.write() as session:
        enqueue(session, target="billing", method="/x.v1.X/Charge", key="b-late", payload=b"")
    await asyncio.sleep(0.3)  # past the failed events' own first backoff, if short
    assert await relay.drain_once() == 1
    assert tried.count("signaling") == 1, "a paused target is not tried"
