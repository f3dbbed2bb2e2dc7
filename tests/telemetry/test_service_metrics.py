"""The product metrics the alerts and the dashboard read, moved by real service processes
and read off each one's Prometheus endpoint (TELEMESH_METRICS_PORT): check-ins, room
joins by role (resumes apart), open rooms, the age of the oldest outbox event, and audit
chain verification failures (issue 18)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import grpc
import pytest
from sqlalchemy import create_engine, text

from telemesh.consent.v1 import consent_pb2
from telemesh.db import sync_url
from telemesh.session.v1 import session_pb2
from telemesh.signaling.v1 import signaling_pb2, signaling_pb2_grpc
from telemesh_tools.stack.process import free_port
from tests.support.flows import Flows, Metadata
from tests.support.harness import Stack
from tests.support.polling import eventually
from tests.support.prometheus import scrape

S = signaling_pb2


class Endpoint:
    """One service's /metrics, read as Prometheus would."""

    def __init__(self, port: int) -> None:
        self.url = f"http://127.0.0.1:{port}/metrics"

    async def value(self, name: str, **labels: str) -> float | None:
        """The sample `name` whose labels include `labels` (None when there is none)."""
        samples = await asyncio.to_thread(scrape, self.url)
        found = [
            sample.value
            for sample in samples
            if sample.name == name and labels.items() <= sample.labels.items()
        ]
        assert len(found) <= 1, f"{name}{labels} matches several series"
        return found[0] if found else None

    async def becomes(
        self, name: str, wanted: Callable[[float | None], bool], seconds: float = 30, **labels: str
    ) -> float | None:
        """Waits for the sample to satisfy `wanted` (the services report in their own time)."""
        seen: list[float | None] = []

        async def check() -> bool:
            seen.append(await self.value(name, **labels))
            return wanted(seen[-1])

        try:
            await eventually(check, seconds, 0.2)
        except AssertionError:
            raise AssertionError(f"{name}{labels}: last seen {seen[-1:]}") from None
        return seen[-1]


def _start(stack: Stack, *names: str) -> dict[str, Endpoint]:
    ports = {name: free_port() for name in names}
    for name in names:
        stack.start(name, env={"TELEMESH_METRICS_PORT": str(ports[name])})
    return {name: Endpoint(port) for name, port in ports.items()}


@asynccontextmanager
async def _room_stream(
    flows: Flows, token: str, metadata: Metadata, resume_after: int = 0
) -> AsyncIterator[S.JoinRoomResponse]:
    """A JoinRoom stream, open while the context lasts; yields its `joined` header."""
    stub = signaling_pb2_grpc.SignalingServiceStub(flows.channel("signaling"))
    call = stub.JoinRoom(
        S.JoinRoomRequest(join_token=token, resume_after_sequence=resume_after),
        metadata=metadata,
    )
    try:
        first = await call.read()
        assert isinstance(first, S.JoinRoomResponse), first
        assert first.HasField("joined"), first
        yield first
    finally:
        call.cancel()


def _tamper(stack: Stack, service: str, table: str, column: str) -> Callable[[], bool]:
    """Edits entry 1 of a hash-chained log in the service's own database (as an attacker
    with database access would); true once there was an entry to edit."""

    def edit() -> bool:
        engine = create_engine(sync_url(stack[service].env["TELEMESH_DATABASE_URL"]))
        try:
            with engine.begin() as db:
                changed = db.execute(
                    text(f"UPDATE {table} SET {column} = 'someone-else' WHERE sequence = 1")
                )
                return bool(changed.rowcount == 1)
        finally:
            engine.dispose()

    return edit


async def test_a_visit_moves_the_product_metrics_of_every_service(
    make_stack: Callable[..., Stack], backend: str
) -> None:
    stack = make_stack(backend)  # billing starts later: the completion waits for it
    endpoints = _start(stack, "consent", "session", "signaling")
    session, signaling, consent = endpoints["session"], endpoints["signaling"], endpoints["consent"]
    flows = Flows(stack)
    try:
        # Audit failures are exported at zero from the start, so that Prometheus sees the
        # first failure as an increase.
        failures = "telemesh_audit_verify_failures_total"
        assert await session.value(failures, chain="access_log") == 0
        assert await consent.value(failures, chain="consent_audit") == 0
        assert await session.value("telemesh_visits_checked_in_total") is None

        visit = await flows.ready_visit()  # booked, consented, checked in
        assert await session.value("telemesh_visits_booked_total") == 1
        assert await session.value("telemesh_visits_checked_in_total") == 1
        with pytest.raises(grpc.aio.AioRpcError) as again:  # refused, so not counted
            await flows.check_in(visit)
        assert again.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert await session.value("telemesh_visits_checked_in_total") == 1

        # Joins by role, resumes apart; the room is open while the visit goes on.
        joins = "telemesh_signaling_joins_total"
        patient_token = await flows.join_token(visit, "patient")
        clinician_token = await flows.join_token(visit, "clinician")
        async with _room_stream(flows, patient_token, visit.patient):
            assert await signaling.value(joins, role="patient", resumed="false") == 1
            assert await signaling.value("telemesh_signaling_rooms_open") == 1
        async with _room_stream(flows, clinician_token, visit.clinician):
            assert await signaling.value(joins, role="clinician", resumed="false") == 1
        async with _room_stream(flows, patient_token, visit.patient, resume_after=1):
            assert await signaling.value(joins, role="patient", resumed="true") == 1
        assert await signaling.value(joins, role="patient", resumed="false") == 1
        assert await signaling.value("telemesh_signaling_rooms_open") == 1

        # Completion closes the room (the session's outbox tells signaling) and leaves
        # the charge waiting in the outbox while billing is down: its age shows.
        await flows.admit(visit)
        await flows.complete(visit)
        await signaling.becomes("telemesh_signaling_rooms_open", lambda v: v == 0)
        age = "telemesh_outbox_oldest_age_seconds"
        await session.becomes(age, lambda v: v is not None and v > 0)
        assert await session.value("telemesh_outbox_backlog") == 1
        # Billing comes up: the charge is delivered and nothing waits any more.
        stack.start("billing")
        await session.becomes(age, lambda v: v == 0, seconds=90)
        assert await session.value("telemesh_outbox_backlog") == 0

        # Tampering found by a verification is counted, by chain.
        admin = stack.tokens.role("admin", "sre-1")
        await eventually(
            lambda: asyncio.to_thread(_tamper(stack, "consent", "audit_entries", "actor_id"))
        )
        trail = await flows.consent.VerifyAuditTrail(
            consent_pb2.VerifyAuditTrailRequest(), metadata=admin
        )
        assert not trail.intact
        assert await consent.value(failures, chain="consent_audit") == 1
        assert await session.value(failures, chain="access_log") == 0
        await eventually(
            lambda: asyncio.to_thread(_tamper(stack, "session", "access_log_entries", "actor_id"))
        )
        log = await flows.session.VerifyAccessLog(
            session_pb2.VerifyAccessLogRequest(), metadata=admin
        )
        assert not log.intact
        assert await session.value(failures, chain="access_log") == 1
    except grpc.aio.AioRpcError as error:
        raise AssertionError(f"{error.code()}: {error.details()}\n{stack.logs()}") from error
    finally:
        await flows.close()
