"""Revocation reaches consumers at once: the WatchConsentChanges stream, and the runtime's
ConsentWatcher (cache, subscribers, fail closed) against a real consent service."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import grpc
import pytest

from telemesh.clients import ServiceClients
from telemesh.config import RuntimeSettings
from telemesh.consent.v1 import consent_pb2 as P
from telemesh.consent_watch import ConsentWatcher
from telemesh.errors import Unavailable
from tests.support.consent_api import TELEHEALTH, ConsentApi, consent_api, new_patient
from tests.support.harness import Stack

# The functional deadline of the brief: a revocation reaches every consumer within 1 s.
DEADLINE_SECONDS = 1.0


@asynccontextmanager
async def watcher_of(
    stack: Stack, service: str = "signaling", check_timeout_seconds: float = 2.0
) -> AsyncIterator[ConsentWatcher]:
    """A ConsentWatcher as `service` would run it, started and stopped around the block."""
    settings = RuntimeSettings(home=stack.home, consent_addr=stack.addresses["consent"])
    clients = ServiceClients(settings, service)
    watcher = ConsentWatcher(clients, check_timeout_seconds=check_timeout_seconds)
    try:
        await watcher.start()
        yield watcher
    finally:
        await watcher.stop()
        await clients.close()


async def unhealthy_within(watcher: ConsentWatcher, seconds: float) -> bool:
    for _ in range(int(seconds / 0.02)):
        if not watcher.healthy:
            return True
        await asyncio.sleep(0.02)
    return not watcher.healthy


async def check_count(api: ConsentApi, patient: str) -> int:
    return sum(1 for e in await api.audit(patient) if e.action == P.AUDIT_ACTION_CHECK)


async def test_the_stream_sends_changes_and_a_resumed_one_misses_none(
    consent_stack: Stack,
) -> None:
    patient = new_patient()
    session = consent_stack.tokens.service("session")
    async with consent_api(consent_stack) as api:
        stream = api.stub.WatchConsentChanges(
            P.WatchConsentChangesRequest(patient_id=patient), metadata=session
        )
        ready = await stream.read()
        assert isinstance(ready, P.WatchConsentChangesResponse)
        assert not ready.HasField("change")
        consent = await api.grant(patient)
        granted = await asyncio.wait_for(stream.read(), 5)
        assert isinstance(granted, P.WatchConsentChangesResponse)
        assert granted.change.kind == P.CONSENT_CHANGE_KIND_GRANTED
        assert granted.change.consent == consent
        stream.cancel()

        # Changes made while nobody watched arrive on a stream that resumes after them.
        revoked = await api.revoke(consent)
        await api.grant(new_patient())  # someone else's: filtered out
        resumed = api.stub.WatchConsentChanges(
            P.WatchConsentChangesRequest(
                patient_id=patient, after_sequence=granted.through_sequence
            ),
            metadata=session,
        )
        await resumed.read()
        missed = await asyncio.wait_for(resumed.read(), 5)
        assert isinstance(missed, P.WatchConsentChangesResponse)
        assert missed.change.kind == P.CONSENT_CHANGE_KIND_REVOKED
        assert missed.change.consent == revoked
        assert missed.change.sequence > granted.change.sequence
        resumed.cancel()


async def test_only_the_session_and_signaling_services_watch(consent_stack: Stack) -> None:
    tokens = consent_stack.tokens
    async with consent_api(consent_stack) as api:
        for caller in (
            tokens.patient("p-1"),
            tokens.clinician("c-1"),
            tokens.role("partner", "clinic-a"),
            tokens.service("billing"),
        ):
            stream = api.stub.WatchConsentChanges(P.WatchConsentChangesRequest(), metadata=caller)
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await stream.read()
            assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED


async def test_a_revocation_reaches_a_watcher_and_its_cache_within_one_second(
    consent_stack: Stack,
) -> None:
    patient = new_patient()
    changes: asyncio.Queue[P.ConsentChange] = asyncio.Queue()

    async def on_change(change: P.ConsentChange) -> None:
        await changes.put(change)

    async with consent_api(consent_stack) as api, watcher_of(consent_stack) as watcher:
        watcher.subscribe(on_change)
        assert watcher.healthy
        consent = await api.grant(patient)
        granted = await asyncio.wait_for(changes.get(), 5)
        assert granted.kind == P.CONSENT_CHANGE_KIND_GRANTED

        assert await watcher.is_permitted(patient, TELEHEALTH)
        assert await watcher.is_permitted(patient, TELEHEALTH)
        assert await check_count(api, patient) == 1, "the second answer came from the cache"

        await api.revoke(consent)
        revoked_at = time.monotonic()
        change = await asyncio.wait_for(changes.get(), DEADLINE_SECONDS)
        assert change.kind == P.CONSENT_CHANGE_KIND_REVOKED
        assert change.consent.patient_id == patient
        assert not await watcher.is_permitted(patient, TELEHEALTH)
        assert time.monotonic() - revoked_at < DEADLINE_SECONDS
        assert await check_count(api, patient) == 2, "the revocation dropped the cached permit"


async def test_consent_silent_or_down_fails_closed(make_stack: Callable[..., Stack]) -> None:
    """A stream that goes silent (the service frozen) or breaks (the service killed) stops
    vouching for cached answers within a second, and checks then raise Unavailable."""
    stack = make_stack("sqlite", "session", "consent")
    service = stack["consent"]
    patient = new_patient()
    async with consent_api(stack) as api:
        await api.grant(patient)
    async with watcher_of(stack, "session", check_timeout_seconds=0.5) as watcher:
        assert await watcher.is_permitted(patient, TELEHEALTH)
        assert service.process is not None
        service.process.send_signal(signal.SIGSTOP)
        try:
            assert await unhealthy_within(watcher, DEADLINE_SECONDS), "silence noticed"
            with pytest.raises(Unavailable):
                await watcher.is_permitted(patient, TELEHEALTH)
        finally:
            service.process.send_signal(signal.SIGCONT)
        assert await watcher.is_permitted(patient, TELEHEALTH)

        service.kill()
        assert await unhealthy_within(watcher, DEADLINE_SECONDS), "a broken stream noticed"
        with pytest.raises(Unavailable):
            await watcher.is_permitted(patient, TELEHEALTH)
