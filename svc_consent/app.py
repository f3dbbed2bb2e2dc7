"""The consent service's wiring: its database, its servicer, the feed that wakes watch
streams, batched audited checks, and the sweep that records expiries."""

from __future__ import annotations

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
from telemesh.access_log import remote_recorder
from telemesh.app import ServiceAppBase
from telemesh.background import Loop, every
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

    async def register(self, server: grpc.aio.Server) -> None:
        # Channels are made on the server's event loop, so here and not in __init__.
        access = ConsentAccess(
            PatientAccess(RemoteCareSource(self.clients), remote_recorder(self.clients, self.name))
        )
        checks = CheckBatcher(self.db, self.consent_settings.check_batch_size)
        servicer = ConsentServicer(self.db, access, self.changes, checks)
        consent_pb2_grpc.add_ConsentServiceServicer_to_server(servicer, server)
        settings = self.consent_settings
        self.background(checks)
        self.background(
            Loop(
                "consent-change-feed",
                lambda: self.changes.follow_database(self.db, settings.change_poll_seconds),
            )
        )
        self.background(
            every("consent-expiry-sweep", lambda: settings.expiry_sweep_seconds, self._expire_due)
        )

    async def _expire_due(self) -> None:
        """Records the expiry of consents whose time has come (a version each)."""
        now = datetime.now(UTC)
        async with self.db.read() as session:
            due = await ledger.due_for_expiry(session, now, 1)
        if not due:
            return
        expired = await self.db.run_write(
            partial(consent_changes.expire_due, now=now, limit=EXPIRY_BATCH)
        )
        if expired:
            self.changes.notify()

    async def drain(self) -> None:
        # Ends watch streams so that consumers reconnect to another replica.
        self.changes.close()

    async def stop(self) -> None:
        self.changes.close()
        await super().stop()
