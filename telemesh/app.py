"""The common shape of a service: its own database, migrated on start, a servicer, and
its background jobs.

Each `svc_<name>/app.py` subclasses `ServiceAppBase`: in `register` it builds what the
servicer needs, hands it in (the servicer never sees the app), and declares its
background jobs (`background`, `relay_outbox`); `telemesh.server.serve` runs it, and the
jobs start after registration and stop, newest first, when the service stops.

A service that keeps PHI sets `cipher` and its `sealed_columns`: at start, after the
migrations and before it serves, values still in the clear there are sealed (migrations
cannot read the keys).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

import grpc

from telemesh.background import BackgroundJob, Jobs
from telemesh.clients import ServiceClients
from telemesh.config import RuntimeSettings
from telemesh.db import Database, migrate
from telemesh.field_crypto import FieldCipher
from telemesh.file_modes import warn_if_exposed
from telemesh.logs import log
from telemesh.outbox import Deliver, OutboxRelay
from telemesh.paging import PageTokens, install
from telemesh.phi_sealing import SealedColumn, seal_plaintext

logger = logging.getLogger("telemesh.app")


class ServiceAppBase:
    name: str
    package: str
    service_names: Sequence[str]
    cipher: FieldCipher | None = None
    sealed_columns: Sequence[SealedColumn] = ()

    def __init__(self, settings: RuntimeSettings) -> None:
        self.settings = settings
        self.database_url = settings.database(self.name)
        self._db: Database | None = None
        self.clients = ServiceClients(settings, self.name)
        self.jobs = Jobs()
        self._relay: OutboxRelay | None = None

    @property
    def db(self) -> Database:
        assert self._db is not None, "the app has not started"
        return self._db

    async def start(self, server: grpc.aio.Server) -> None:
        await asyncio.to_thread(migrate, self.package, self.database_url)
        warn_if_exposed(self.settings.home, self.database_url)
        self._db = Database(self.database_url)
        if self.cipher is not None and self.sealed_columns:
            sealed = await seal_plaintext(self._db, self.cipher, self.sealed_columns)
            if sealed:
                log(logger, logging.WARNING, "PHI found in the clear, now sealed", values=sealed)
        # Page tokens signed with this service's secret verify on every replica.
        install(
            PageTokens.for_service(self.settings.home, self.name, self.settings.page_token_secret)
        )
        await self.register(server)
        await self.jobs.start_all()

    async def register(self, server: grpc.aio.Server) -> None:
        """Builds the servicer's dependencies, adds it to `server`, declares the jobs."""
        raise NotImplementedError

    def background(self, job: BackgroundJob) -> None:
        """Declares a job: started after `register`, stopped when the service stops."""
        self.jobs.add(job)

    def relay_outbox(self, deliver: Deliver) -> None:
        """Runs this service's outbox relay in the process (a job like the others)."""
        self._relay = OutboxRelay(self.db, deliver)
        self.background(self._relay)

    def outbox_committed(self) -> None:
        """New outbox events were committed: the relay looks now, not at its next poll."""
        if self._relay is not None:
            self._relay.wake()

    async def drain(self) -> None:
        """SIGTERM: in-flight calls still run; end what would hold them (streams)."""
        return None

    async def stop(self) -> None:
        await self.jobs.stop_all()
        await self.clients.close()
        if self._db is not None:
            await self._db.dispose()
