"""The signaling service's wiring: its database, rooms, links to other services, the
outbox relay for connection events, and its servicer on the shared bootstrap."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from datetime import UTC, datetime
from typing import Any

import grpc

from svc_signaling.consent_link import ConsentLink
from svc_signaling.join_tokens import JoinTokenVerifier
from svc_signaling.precall import PreCallChecks
from svc_signaling.registry import RoomRegistry
from svc_signaling.servicer import SignalingServicer
from svc_signaling.session_link import SessionLink
from svc_signaling.settings import SignalingSettings
from telemesh.app import ServiceAppBase
from telemesh.config import RuntimeSettings, load
from telemesh.outbox import OutboxRelay, grpc_deliverer
from telemesh.signaling.v1 import signaling_pb2, signaling_pb2_grpc

logger = logging.getLogger("telemesh.signaling")


class SignalingApp(ServiceAppBase):
    name = "signaling"
    package = "svc_signaling"
    service_names = (signaling_pb2.DESCRIPTOR.services_by_name["SignalingService"].full_name,)

    def __init__(self, settings: RuntimeSettings) -> None:
        super().__init__(settings)
        self.signaling_settings = load(SignalingSettings)
        self.session = SessionLink(self.clients)
        self.join_tokens = JoinTokenVerifier(
            self.session.join_token_keys, self.signaling_settings.jwks_refresh_seconds
        )
        self.consent = ConsentLink(self.clients, self.signaling_settings.consent_watch)
        self.precall = PreCallChecks(self.signaling_settings)
        self._registry: RoomRegistry | None = None
        self._relay: OutboxRelay | None = None
        self._tasks: set[asyncio.Task[Any]] = set()

    @property
    def registry(self) -> RoomRegistry:
        assert self._registry is not None, "the app has not started"
        return self._registry

    def spawn(self, work: Coroutine[Any, Any, Any]) -> None:
        """Runs `work` in the background, logging a failure instead of losing it."""
        task = asyncio.create_task(work)
        self._tasks.add(task)

        def done(finished: asyncio.Task[Any]) -> None:
            self._tasks.discard(finished)
            if not finished.cancelled() and finished.exception() is not None:
                logger.error("background work failed", exc_info=finished.exception())

        task.add_done_callback(done)

    def wake_outbox(self) -> None:
        if self._relay is not None:
            self._relay.wake()

    async def register(self, server: grpc.aio.Server) -> None:
        started = datetime.now(UTC)
        self._registry = RoomRegistry(self.db, self.signaling_settings)
        servicer = SignalingServicer(self)
        signaling_pb2_grpc.add_SignalingServiceServicer_to_server(servicer, server)
        self._relay = OutboxRelay(self.db, grpc_deliverer(self.clients.channel))
        self._relay.start()
        await self.consent.start(servicer.consent_withdrawn)
        self.spawn(servicer.settle_after_restart(started))

    async def drain(self) -> None:
        # End every stream now so that clients resume elsewhere instead of waiting.
        if self._registry is not None:
            for room in self._registry.cached():
                room.drain()

    async def stop(self) -> None:
        await self.consent.stop()
        await self.precall.stop()
        if self._relay is not None:
            await self._relay.stop()
        for task in list(self._tasks):
            task.cancel()
        await super().stop()
