"""The consent service's wiring: its database, its servicer, the feed that wakes watch
streams, batched audited checks, and the sweep that records expiries."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import UTC, datetime
from functools import partial

import grpc

from svc_consent import consent_changes, ledger
from svc_consent.access import ConsentAccess
from svc_consent.change_feed import ChangeFeed
from svc_consent.check_batcher import CheckBatcher
from svc_consent.servicer import ConsentServicer
from svc_consent.settings import ConsentSettings
from telemesh.access_log import RemoteAccessRecorder
from telemesh.app import ServiceAppBase
from telemesh.care import PatientAccess, RemoteCareSource
from telemesh.config import RuntimeSettings, load
from telemesh.consent.v1 import consent_pb2, consent_pb2_grpc

logger = logging.getLogger("svc_consent")

EXPIRY_BATCH = 100


class ConsentApp(ServiceAppBase):
    name = "consent"
    package = "svc_consent"
    service_names = (consent_pb2.DESCRIPTOR.services_by_name["ConsentService"].full_name,)

    def __init__(self, settings: RuntimeSettings) -> None:
        super().__init__(settings)
        self.consent_settings = load(ConsentSettings)
        self.changes = ChangeFeed()
        self._checks: CheckBatcher | None = None
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def checks(self) -> CheckBatcher:
        assert self._checks is not None, "the app has not started"
        return self._checks

    async def register(self, server: grpc.aio.Server) -> None:
        # Channels are made on the server's event loop, so here and not in __init__.
        self.access = ConsentAccess(
            PatientAccess(
                RemoteCareSource(self.clients), RemoteAccessRecorder(self.clients, self.name)
            )
        )
        self._checks = CheckBatcher(self.db, self.consent_settings.check_batch_size)
        consent_pb2_grpc.add_ConsentServiceServicer_to_server(ConsentServicer(self), server)
        self._tasks = [
            asyncio.create_task(
                self.changes.follow_database(self.db, self.consent_settings.change_poll_seconds)
            ),
            asyncio.create_task(self._sweep_expired()),
        ]

    async def _sweep_expired(self) -> None:
        while not self.changes.closed:
            await asyncio.sleep(self.consent_settings.expiry_sweep_seconds)
            try:
                now = datetime.now(UTC)
                async with self.db.read() as session:
                    due = await ledger.due_for_expiry(session, now, 1)
                if not due:
                    continue
                expired = await self.db.run_write(
                    partial(consent_changes.expire_due, now=now, limit=EXPIRY_BATCH)
                )
                if expired:
                    self.changes.notify()
            except Exception:
                logger.warning("recording expired consents failed", exc_info=True)

    async def drain(self) -> None:
        # Ends watch streams so that consumers reconnect to another replica.
        self.changes.close()

    async def stop(self) -> None:
        self.changes.close()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._checks is not None:
            await self._checks.close()
        await super().stop()
