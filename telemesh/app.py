"""The common shape of a service: its own database, migrated on start, and a servicer.

Each `svc_<name>/app.py` subclasses `ServiceAppBase` and registers its servicer;
`telemesh.server.serve` runs it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import grpc

from telemesh.clients import ServiceClients
from telemesh.config import RuntimeSettings
from telemesh.db import Database, migrate
from telemesh.paging import PageTokens, install


class ServiceAppBase:
    name: str
    package: str
    service_names: Sequence[str]

    def __init__(self, settings: RuntimeSettings) -> None:
        self.settings = settings
        self.database_url = settings.database(self.name)
        self._db: Database | None = None
        self.clients = ServiceClients(settings, self.name)

    @property
    def db(self) -> Database:
        assert self._db is not None, "the app has not started"
        return self._db

    async def start(self, server: grpc.aio.Server) -> None:
        await asyncio.to_thread(migrate, self.package, self.database_url)
        self._db = Database(self.database_url)
        # Page tokens signed with this service's secret verify on every replica.
        install(PageTokens.for_service(self.settings.home, self.name))
        await self.register(server)

    async def register(self, server: grpc.aio.Server) -> None:
        raise NotImplementedError

    async def drain(self) -> None:
        return None

    async def stop(self) -> None:
        await self.clients.close()
        if self._db is not None:
            await self._db.dispose()
