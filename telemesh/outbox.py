"""The transactional outbox and its relay: events that must reach another service.

A service writes an event into its own `outbox_events` table in the same transaction as
the change that causes it, so the event exists if and only if the change does. The
relay then delivers each event as one unary RPC (`method`, serialized request `payload`)
to the target service, with retries and exponential backoff, until it is acknowledged.
Delivery is at least once; the receiver de-duplicates on the event's idempotency key
(for a completion, the visit id), which makes the effect exactly once. An event the
receiver refuses for good (bad content, a conflicting earlier delivery) is kept as a
dead letter (`dead_time`) instead of being retried forever.

An event whose request holds PHI (a completion's diagnosis codes) is enqueued with the
service's field cipher: its payload is stored sealed, bound to the event, and opened
only in memory, just before it is sent.

Several relays may run against one table (the service's own and a standalone
`python -m telemesh.outbox`): each claims a batch with a lease, so they share the work,
and a relay that dies mid-batch only delays its events until the lease runs out.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import grpc
from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from sqlalchemy import and_, func, or_, update
from sqlmodel import Field, SQLModel, col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from telemesh import metrics
from telemesh.clients import VISIT_AFFINITY
from telemesh.db import Database
from telemesh.db_types import UtcDateTime
from telemesh.field_crypto import FieldCipher, is_sealed
from telemesh.logs import log

logger = logging.getLogger("telemesh.outbox")
tracer = trace.get_tracer("telemesh.outbox")


TABLE = "outbox_events"


class OutboxEvent(SQLModel, table=True):
    __tablename__ = TABLE

    event_id: str = Field(primary_key=True, max_length=36)
    target: str = Field(max_length=40)  # the service to call: "billing"
    method: str = Field(max_length=200)  # full gRPC method path
    key: str = Field(max_length=100, index=True)  # the receiver's idempotency key
    payload: bytes  # the serialized request, sealed when it holds PHI
    traceparent: str = Field(default="", max_length=100)

    create_time: datetime = Field(sa_type=UtcDateTime)
    attempts: int = 0

    next_attempt_time: datetime = Field(sa_type=UtcDateTime)
    lease_until: datetime | None = Field(default=None, sa_type=UtcDateTime)
    delivered_time: datetime | None = Field(default=None, index=True, sa_type=UtcDateTime)
    dead_time: datetime | None = Field(default=None, sa_type=UtcDateTime)
    last_error: str = Field(default="", max_length=200)


def enqueue(
    session: AsyncSession,
    *,
    target: str,
    method: str,
    key: str,
    payload: bytes,
    traceparent: str = "",
    cipher: FieldCipher | None = None,
) -> OutboxEvent:
    """Adds an event to the caller's transaction; with `cipher` (a payload that holds
    PHI) the payload is stored sealed."""
    now = datetime.now(UTC)
    event_id = str(uuid.uuid4())
    if cipher is not None:
        payload = seal_payload(cipher, event_id, payload)
    event = OutboxEvent(
        event_id=event_id,
        target=target,
        method=method,
        key=key,
        payload=payload,
        traceparent=traceparent,
        create_time=now,
        next_attempt_time=now,
    )
    session.add(event)
    return event


def seal_payload(cipher: FieldCipher, event_id: str, payload: bytes) -> bytes:
    return cipher.encrypt_bytes(payload, table=TABLE, column="payload", row_id=event_id)


def open_payload(cipher: FieldCipher | None, event: OutboxEvent) -> bytes:
    """The request to send: a sealed payload opened (which needs the service's cipher)."""
    if not is_sealed(event.payload):
        return event.payload
    if cipher is None:
        raise RuntimeError("a sealed outbox payload needs the service's PHI keys")
    return cipher.decrypt_bytes(event.payload, table=TABLE, column="payload", row_id=event.event_id)


# Answers that a retry cannot change: the receiver refused the event itself (bad
# content, or a conflicting earlier delivery). Such an event becomes a dead letter for a
# human to look at; anything else (down, overloaded, misconfigured) is retried.
PERMANENT_FAILURES = frozenset(
    {grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.ALREADY_EXISTS, grpc.StatusCode.OUT_OF_RANGE}
)


RECORD_CONNECTION_EVENT = "/telemesh.session.v1.SessionService/RecordConnectionEvent"

# Refusals that settle an event as an acknowledgement would, by method: the receiver
# says there is nothing left to do, so the event is done rather than retried.
SETTLED_BY = {
    # The visit is no longer in progress (completed, cancelled): no connected time is
    # left to record.
    RECORD_CONNECTION_EVENT: frozenset({grpc.StatusCode.FAILED_PRECONDITION}),
}


# How long a target found unreachable is left out of the claims: doubling from the first
# pause to the ceiling while it stays down.
PAUSE_FIRST = 0.5
PAUSE_CEILING = 10.0


class TargetUnavailable(Exception):
    """The target was unreachable earlier in the same batch; not tried again."""


def _unreachable(error: Exception | None) -> bool:
    return isinstance(error, grpc.aio.AioRpcError) and error.code() in (
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED,
    )


def backoff_seconds(attempts: int, base: float = 0.2, ceiling: float = 30.0) -> float:
    """Exponential backoff with full jitter."""
    return random.uniform(0, min(ceiling, base * 2 ** min(attempts, 20)))


Deliver = Callable[[OutboxEvent], Awaitable[None]]


@dataclass
class RelaySettings:
    batch_size: int = 50
    poll_seconds: float = 1.0
    lease_seconds: float = 30.0
    concurrency: int = 8


class OutboxRelay:
    """Delivers due events from one database until stopped."""

    def __init__(self, db: Database, deliver: Deliver, settings: RelaySettings | None = None):
        self.db = db
        self.deliver = deliver
        self.settings = settings or RelaySettings()
        self.owner = uuid.uuid4().hex[:12]
        self._wake = asyncio.Event()
        # Targets found unreachable: (paused until, on the monotonic clock; times in a row).
        self._pauses: dict[str, tuple[float, int]] = {}
        self._task: asyncio.Task[None] | None = None

    def wake(self) -> None:
        """New events were committed: look now instead of at the next poll."""
        self._wake.set()

    async def start(self) -> None:
        self._task = asyncio.create_task(self.run(), name="outbox-relay")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def run(self) -> None:
        while True:
            try:
                delivered = await self.drain_once()
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("outbox relay pass failed")
                delivered = 0
            if delivered:
                continue  # there may be more right away
            await self._report_backlog()
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.settings.poll_seconds)

    async def _report_backlog(self) -> None:
        try:
            waiting, dead = await backlog(self.db)
            oldest = await oldest_waiting_age(self.db)
        except Exception:
            return  # a metric is not worth failing the relay over
        metrics.gauge("telemesh.outbox.backlog", "Outbox events waiting for delivery", waiting)
        metrics.gauge("telemesh.outbox.dead_letters", "Outbox events refused for good", dead)
        metrics.gauge(
            "telemesh.outbox.oldest_age",
            "Age of the oldest outbox event waiting for delivery (0 when none waits)",
            oldest,
            unit="s",
        )

    def _pause(self, target: str) -> None:
        _, streak = self._pauses.get(target, (0.0, 0))
        seconds = min(PAUSE_CEILING, PAUSE_FIRST * 2**streak)
        self._pauses[target] = (time.monotonic() + seconds, streak + 1)

    def _paused_targets(self) -> list[str]:
        now = time.monotonic()
        return [target for target, (until, _) in self._pauses.items() if until > now]

    async def _claim(self) -> list[OutboxEvent]:
        now = datetime.now(UTC)
        lease = now + timedelta(seconds=self.settings.lease_seconds)

        async def claim(session: AsyncSession) -> list[OutboxEvent]:
            due = (
                select(OutboxEvent)
                .where(
                    col(OutboxEvent.delivered_time).is_(None),
                    col(OutboxEvent.dead_time).is_(None),
                    col(OutboxEvent.next_attempt_time) <= now,
                    or_(
                        col(OutboxEvent.lease_until).is_(None),
                        col(OutboxEvent.lease_until) < now,
                    ),
                )
                .order_by(col(OutboxEvent.create_time))
                .limit(self.settings.batch_size)
            )
            paused = self._paused_targets()
            if paused:  # their events wait where they are, and others go first
                due = due.where(col(OutboxEvent.target).not_in(paused))
            if not self.db.sqlite:
                due = due.with_for_update(skip_locked=True)
            events = list((await session.exec(due)).all())
            for event in events:
                event.lease_until = lease
                session.add(event)
            return events

        return await self.db.run_write(claim)

    async def drain_once(self) -> int:
        """Claims one batch and delivers it; returns how many were delivered.

        A target found unreachable is not tried again in that batch, and is left out of
        the next claims for a pause that doubles while it stays down (up to
        PAUSE_CEILING): one service that is down does not hold up the others' events.
        """
        events = await self._claim()
        if not events:
            return 0
        limit = asyncio.Semaphore(self.settings.concurrency)
        unreachable: set[str] = set()

        async def one(event: OutboxEvent) -> bool:
            async with limit:
                if event.target in unreachable:
                    await self._failed(event, TargetUnavailable(event.target))
                    return False
                error = await self._deliver_one(event)
                if _unreachable(error):
                    unreachable.add(event.target)
                elif error is None:
                    self._pauses.pop(event.target, None)
                return error is None

        results = await asyncio.gather(*(one(event) for event in events))
        for target in unreachable:
            self._pause(target)
        delivered = [event for event, ok in zip(events, results, strict=True) if ok]
        if delivered:
            await self._delivered(delivered)
        return len(delivered)

    async def _deliver_one(self, event: OutboxEvent) -> Exception | None:
        """Delivers one event; the error, or None when it was acknowledged."""
        parent = (
            propagate.extract({"traceparent": event.traceparent}) if event.traceparent else None
        )
        token = otel_context.attach(parent) if parent is not None else None
        try:
            with tracer.start_as_current_span(
                "outbox deliver",
                kind=trace.SpanKind.PRODUCER,
                attributes={
                    "messaging.system": "telemesh.outbox",
                    "messaging.destination.name": event.target,
                    "telemesh.outbox.event_id": event.event_id,
                    "telemesh.outbox.attempt": event.attempts + 1,
                },
            ) as span:
                try:
                    await self.deliver(event)
                except Exception as exc:
                    span.set_status(trace.Status(trace.StatusCode.ERROR, type(exc).__name__))
                    await self._failed(event, exc)
                    return exc
        finally:
            if token is not None:
                otel_context.detach(token)
        return None

    async def _delivered(self, events: list[OutboxEvent]) -> None:
        """Marks a batch delivered in one transaction. Should the relay die before this
        commits, the events are delivered again after their lease: the receiver's
        idempotency key makes that harmless."""
        ids = [event.event_id for event in events]

        async def mark(session: AsyncSession) -> None:
            await session.exec(
                update(OutboxEvent)
                .where(col(OutboxEvent.event_id).in_(ids))
                .values(delivered_time=datetime.now(UTC), lease_until=None, last_error="")
            )

        await self.db.run_write(mark)
        for event in events:
            metrics.count(
                "telemesh.outbox.delivered", "Outbox events delivered", target=event.target
            )

    async def _failed(self, event: OutboxEvent, error: Exception) -> None:
        attempts = event.attempts + 1
        code = error.code() if isinstance(error, grpc.aio.AioRpcError) else None
        reason = code.name if code is not None else type(error).__name__
        dead = code in PERMANENT_FAILURES
        delay = backoff_seconds(attempts)
        now = datetime.now(UTC)

        async def mark(session: AsyncSession) -> None:
            await session.exec(
                update(OutboxEvent)
                .where(and_(col(OutboxEvent.event_id) == event.event_id))
                .values(
                    attempts=attempts,
                    next_attempt_time=now + timedelta(seconds=delay),
                    lease_until=None,
                    dead_time=now if dead else None,
                    last_error=reason[:200],
                )
            )

        await self.db.run_write(mark)
        if dead:
            metrics.count(
                "telemesh.outbox.dead",
                "Outbox events the receiver refused for good",
                target=event.target,
            )
            log(
                logger,
                logging.ERROR,
                "outbox event refused for good; kept as a dead letter",
                event_id=event.event_id,
                target=event.target,
                key=event.key,
                reason=reason,
            )
            return
        log(
            logger,
            logging.WARNING,
            "outbox delivery failed",
            event_id=event.event_id,
            target=event.target,
            attempts=attempts,
            reason=reason,
            retry_in_s=round(delay, 2),
        )


async def backlog(db: Database, target: str | None = None) -> tuple[int, int]:
    """(events waiting for delivery, dead letters), for one target service or all; for
    the backlog gauge and tests."""
    waiting_query = (
        select(func.count())
        .select_from(OutboxEvent)
        .where(col(OutboxEvent.delivered_time).is_(None), col(OutboxEvent.dead_time).is_(None))
    )
    dead_query = (
        select(func.count()).select_from(OutboxEvent).where(col(OutboxEvent.dead_time).isnot(None))
    )
    if target is not None:
        waiting_query = waiting_query.where(OutboxEvent.target == target)
        dead_query = dead_query.where(OutboxEvent.target == target)
    async with db.read() as session:
        waiting = await session.exec(waiting_query)
        dead = await session.exec(dead_query)
        return int(waiting.one()), int(dead.one())


async def oldest_waiting_age(db: Database) -> float:
    """Seconds since the oldest event still waiting for delivery was enqueued (0 when
    none waits); for the age gauge."""
    query = select(func.min(col(OutboxEvent.create_time))).where(
        col(OutboxEvent.delivered_time).is_(None), col(OutboxEvent.dead_time).is_(None)
    )
    async with db.read() as session:
        oldest = (await session.exec(query)).one()
    if oldest is None:
        return 0.0
    return max((datetime.now(UTC) - oldest).total_seconds(), 0.0)


def grpc_deliverer(
    channel_for: Callable[[str], grpc.aio.Channel],
    timeout: float = 10.0,
    cipher: FieldCipher | None = None,
) -> Deliver:
    """Delivers an event as its unary RPC with raw bytes (sealed payloads opened with
    `cipher`); any non-OK status other than the method's settling ones (`SETTLED_BY`) is
    a failure to retry (the receiver's idempotency makes retries safe)."""

    async def deliver(event: OutboxEvent) -> None:
        call: grpc.aio.UnaryUnaryMultiCallable[bytes, bytes] = channel_for(
            event.target
        ).unary_unary(event.method, request_serializer=None, response_deserializer=None)
        # Events to a service that keeps a visit's state in one replica are keyed by the
        # visit: the mesh routes them to that replica.
        header = VISIT_AFFINITY.get(event.target)
        metadata = ((header, event.key),) if header else None
        try:
            await call(open_payload(cipher, event), timeout=timeout, metadata=metadata)
        except grpc.aio.AioRpcError as error:
            if error.code() not in SETTLED_BY.get(event.method, frozenset()):
                raise

    return deliver
