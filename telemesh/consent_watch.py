"""Consent on the consumer side: cached checks that a revocation reaches within a second.

The session and signaling services ask `is_permitted` before they act (a join token, a
room, a recording) and `subscribe` to react to changes (close a room, stop recording).
`ConsentWatcher` keeps one WatchConsentChanges stream open with the service's own token
and caches CheckConsent answers under three rules:

- a cached answer is used only while the stream is healthy: it delivered something (a
  change or a heartbeat, which the service sends every quarter of the staleness bound)
  within three quarters of `max_staleness_seconds`, which leaves a quarter for the
  network; otherwise every check goes to the service. A revocation travels at once on
  a live stream, and a stream that went silent stops vouching for the cache in time;
- a change for a patient drops that patient's answers, before subscribers hear of it,
  and an answer whose check overlapped such a change (or a reconnect) is not cached;
- an answer lives no longer than the consent's own validity period.

Consent unreachable means `telemesh.errors.Unavailable`: callers fail closed. A dropped
stream reconnects by itself from the last sequence it saw, so subscribers also hear of
changes made while it was down.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import grpc
from google.protobuf.duration_pb2 import Duration

from telemesh import metrics
from telemesh.clients import ServiceClients
from telemesh.consent.v1 import consent_pb2, consent_pb2_grpc
from telemesh.errors import from_rpc_error
from telemesh.logs import log

logger = logging.getLogger("telemesh.consent_watch")

ChangeCallback = Callable[[consent_pb2.ConsentChange], Awaitable[None]]

_RECONNECT_FIRST = 0.05
_RECONNECT_MAX = 2.0


@dataclass(frozen=True)
class _Answer:
    permitted: bool
    stored_at: float  # monotonic
    valid_until: float | None  # wall clock (the consent's period), None: until a change


@dataclass(eq=False)
class _Flight:
    """A check on its way: spoiled when a change for its patient arrives meanwhile, or
    when the stream breaks (changes may then go unseen)."""

    spoiled: bool = False


class ConsentWatcher:
    def __init__(
        self,
        clients: ServiceClients,
        *,
        max_staleness_seconds: float = 1.0,
        check_timeout_seconds: float = 2.0,
        start_timeout_seconds: float = 2.0,
        cache_seconds: float = 300.0,
        max_cached_patients: int = 10_000,
    ) -> None:
        self._stub = consent_pb2_grpc.ConsentServiceStub(clients.channel("consent"))
        self._heartbeat = max(0.05, max_staleness_seconds / 4)
        self._trust_window = max_staleness_seconds * 3 / 4
        self._check_timeout = check_timeout_seconds
        self._start_timeout = start_timeout_seconds
        self._cache_seconds = cache_seconds
        self._max_patients = max_cached_patients
        self._cache: OrderedDict[str, dict[tuple[int, str], _Answer]] = OrderedDict()
        self._flights: dict[str, set[_Flight]] = {}
        self._subscribers: list[ChangeCallback] = []
        self._position: int | None = None  # the last through_sequence received
        self._last_message = float("-inf")
        self._established = asyncio.Event()  # set while the stream is up
        self._task: asyncio.Task[None] | None = None

    # --- life --------------------------------------------------------------------

    async def start(self) -> None:
        """Opens the watch; returns once it is established, or after a short wait (checks
        then go to the service until it is)."""
        if self._task is None:
            self._task = asyncio.create_task(self._follow())
        try:
            await asyncio.wait_for(self._established.wait(), self._start_timeout)
        except TimeoutError:
            log(logger, logging.WARNING, "consent watch not established yet")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        self._disconnected()

    @property
    def healthy(self) -> bool:
        """The stream is up and spoke recently enough for cached answers to be used."""
        return self._established.is_set() and (
            time.monotonic() - self._last_message < self._trust_window
        )

    def subscribe(self, callback: ChangeCallback) -> None:
        """`callback` hears every change, in order, after cached answers were dropped."""
        self._subscribers.append(callback)

    # --- checks ------------------------------------------------------------------

    async def is_permitted(
        self, patient_id: str, category: int, partner_clinic_id: str = ""
    ) -> bool:
        """Whether consent permits the action now; raises Unavailable when consent cannot
        be reached (fail closed)."""
        key = (category, partner_clinic_id)
        cached = self._cached(patient_id, key)
        if cached is not None:
            return cached
        flight = _Flight()
        self._flights.setdefault(patient_id, set()).add(flight)
        try:
            response = await self._stub.CheckConsent(
                consent_pb2.CheckConsentRequest(
                    patient_id=patient_id,
                    category=consent_pb2.ConsentCategory.ValueType(category),
                    partner_clinic_id=partner_clinic_id,
                ),
                timeout=self._check_timeout,
            )
        except grpc.aio.AioRpcError as error:
            raise from_rpc_error(error, "consent") from None
        finally:
            flights = self._flights.get(patient_id)
            if flights is not None:
                flights.discard(flight)
                if not flights:
                    del self._flights[patient_id]
        permitted = response.decision == consent_pb2.DECISION_PERMIT
        if not flight.spoiled and self.healthy:
            self._store(patient_id, key, response, permitted)
        return permitted

    def _cached(self, patient_id: str, key: tuple[int, str]) -> bool | None:
        if not self.healthy:
            return None
        answers = self._cache.get(patient_id, {})
        answer = answers.get(key)
        if answer is None:
            return None
        if time.monotonic() - answer.stored_at > self._cache_seconds or (
            answer.valid_until is not None and time.time() >= answer.valid_until
        ):
            del answers[key]
            return None
        self._cache.move_to_end(patient_id)
        return answer.permitted

    def _store(
        self,
        patient_id: str,
        key: tuple[int, str],
        response: consent_pb2.CheckConsentResponse,
        permitted: bool,
    ) -> None:
        # An answer lasts no longer than the period it rests on.
        valid_until: float | None = None
        consent = response.consent
        if permitted and consent.HasField("valid_until"):
            valid_until = consent.valid_until.ToNanoseconds() / 1e9
        elif response.reason == consent_pb2.DECISION_REASON_NOT_YET_VALID:
            valid_until = consent.valid_from.ToNanoseconds() / 1e9
        self._cache.setdefault(patient_id, {})[key] = _Answer(
            permitted, time.monotonic(), valid_until
        )
        self._cache.move_to_end(patient_id)
        while len(self._cache) > self._max_patients:
            self._cache.popitem(last=False)

    # --- the stream --------------------------------------------------------------

    async def _follow(self) -> None:
        delay = _RECONNECT_FIRST
        while True:
            try:
                await self._stream_once()
                delay = _RECONNECT_FIRST  # the service ended it (draining): come back at once
            except asyncio.CancelledError:
                raise
            except grpc.aio.AioRpcError as error:
                if error.code() == grpc.StatusCode.FAILED_PRECONDITION:
                    # Our position is past the service's newest change (its database was
                    # replaced): start again from what is new.
                    self._position = None
                log(
                    logger,
                    logging.WARNING,
                    "consent watch dropped",
                    code=error.code().name,
                    details=error.details(),
                )
            except Exception:
                logger.error("consent watch failed", exc_info=True)
            finally:
                self._disconnected()
            await asyncio.sleep(delay)
            delay = min(delay * 2, _RECONNECT_MAX)

    async def _stream_once(self) -> None:
        heartbeat = Duration()
        heartbeat.FromNanoseconds(int(self._heartbeat * 1e9))
        request = consent_pb2.WatchConsentChangesRequest(heartbeat_interval=heartbeat)
        if self._position is not None:
            request.after_sequence = self._position
        call = self._stub.WatchConsentChanges(request)
        try:
            async for response in call:
                self._last_message = time.monotonic()
                self._established.set()
                if response.HasField("change"):
                    await self._apply(response.change)
                self._position = response.through_sequence
        finally:
            call.cancel()

    async def _apply(self, change: consent_pb2.ConsentChange) -> None:
        patient_id = change.consent.patient_id
        self._cache.pop(patient_id, None)
        metrics.observe(
            "telemesh.consent.change_lag",
            "ms",
            "From a consent change's record to a watcher dropping its answers (docs/slo.md)",
            time.time() * 1000 - change.consent.record_time.ToMilliseconds(),
            kind=consent_pb2.ConsentChangeKind.Name(change.kind),
        )
        for flight in self._flights.get(patient_id, ()):
            flight.spoiled = True
        for callback in list(self._subscribers):
            try:
                await callback(change)
            except Exception:
                logger.error("a consent change subscriber failed", exc_info=True)

    def _disconnected(self) -> None:
        self._established.clear()
        self._cache.clear()
        for flights in self._flights.values():
            for flight in flights:
                flight.spoiled = True
