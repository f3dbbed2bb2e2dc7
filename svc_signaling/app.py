"""The signaling service's wiring: its database, rooms, links to other services, the
outbox relay for connection events, and its servicer on the shared bootstrap."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

import grpc

from svc_signaling.consent_link import ConsentLink, OnWithdrawn
from svc_signaling.join_tokens import JoinTokenVerifier
from svc_signaling.precall import PreCallChecks
from svc_signaling.registry import RoomRegistry
from svc_signaling.room_hosts import HEARTBEAT_SECONDS, RoomHosts
from svc_signaling.room_life import RoomLife
from svc_signaling.servicer import SignalingDependencies, SignalingServicer
from svc_signaling.session_link import SessionLink
from svc_signaling.settings import SignalingSettings
from telemesh.app import ServiceAppBase
from telemesh.background import Spawner, every
from telemesh.config import RuntimeSettings, load
from telemesh.outbox import grpc_deliverer
from telemesh.signaling.v1 import signaling_pb2, signaling_pb2_grpc

logger = logging.getLogger("telemesh.signaling")


class SignalingApp(ServiceAppBase):
    name = "signaling"
    package = "svc_signaling"
    service_names = (signaling_pb2.DESCRIPTOR.services_by_name["SignalingService"].full_name,)

    def __init__(self, settings: RuntimeSettings) -> None:
        super().__init__(settings)
        self.signaling_settings = load(SignalingSettings)
        self._registry: RoomRegistry | None = None

    async def register(self, server: grpc.aio.Server) -> None:
        started = datetime.now(UTC)
        settings = self.signaling_settings
        session = SessionLink(self.clients)
        consent = ConsentLink(self.clients, settings.consent_watch)
        precall = PreCallChecks(settings)
        spawner = Spawner()
        self._registry = RoomRegistry(self.db, settings)
        hosts = RoomHosts(self.db)
        rooms = RoomLife(
            self.db,
            self._registry,
            consent,
            self.outbox_committed,
            settings.reconnect_grace_seconds,
        )
        servicer = SignalingServicer(
            SignalingDependencies(
                db=self.db,
                settings=settings,
                registry=self._registry,
                join_tokens=JoinTokenVerifier(
                    session.join_token_keys, settings.jwks_refresh_seconds
                ),
                consent=consent,
                session=session,
                precall=precall,
                rooms=rooms,
                hosts=hosts,
                spawn=spawner.spawn,
                outbox_committed=self.outbox_committed,
            )
        )
        signaling_pb2_grpc.add_SignalingServiceServicer_to_server(servicer, server)
        self.relay_outbox(grpc_deliverer(self.clients.channel))
        # Revoked consents close rooms at once; a restart settles what it interrupted.
        self.background(_ConsentReactions(consent, rooms.consent_withdrawn))
        self.background(_Stopping(precall.stop))
        self.background(spawner)
        # With replicas, which one serves each room (nothing to do on SQLite).
        self.background(hosts)
        if hosts.enabled:
            self.background(every("room-hosts", lambda: HEARTBEAT_SECONDS, hosts.heartbeat))
        spawner.spawn(rooms.settle_after_restart(started))

    async def drain(self) -> None:
        # End every stream now so that clients resume elsewhere instead of waiting.
        if self._registry is not None:
            for room in self._registry.cached():
                room.drain()


class _ConsentReactions:
    """The consent link as a background job: it watches and calls back on withdrawals."""

    def __init__(self, link: ConsentLink, on_withdrawn: OnWithdrawn) -> None:
        self.link = link
        self.on_withdrawn = on_withdrawn

    async def start(self) -> None:
        await self.link.start(self.on_withdrawn)

    async def stop(self) -> None:
        await self.link.stop()


class _Stopping:
    """Something with only a stop (the pre-call checks' peers), as a background job."""

    def __init__(self, stop: Callable[[], Awaitable[None]]) -> None:
        self._stop = stop

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        await self._stop()
