"""Consent for a room: checks that fail closed, and changes that act at once.

The shared `ConsentWatcher` keeps a fresh view of consents from the consent service's
watch stream: a check answers from it (or asks the service), and every change reaches
`on_withdrawn` within about a second. With TELEMESH_SIGNALING_CONSENT_WATCH off, checks
go to ConsentService.CheckConsent each time and changes are not watched.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

import grpc

from telemesh.clients import ServiceClients
from telemesh.consent.v1 import consent_pb2, consent_pb2_grpc
from telemesh.consent_watch import ConsentWatcher
from telemesh.errors import from_rpc_error

logger = logging.getLogger("telemesh.signaling.consent")

TELEHEALTH = consent_pb2.CONSENT_CATEGORY_TELEHEALTH
RECORDING = consent_pb2.CONSENT_CATEGORY_RECORDING

# Called with (patient_id, category) when a consent may have stopped permitting.
OnWithdrawn = Callable[[str, int], Awaitable[None]]


class ConsentLink:
    def __init__(self, clients: ServiceClients, watch: bool) -> None:
        self.clients = clients
        self.watch = watch
        self.watcher: ConsentWatcher | None = None

    async def start(self, on_withdrawn: OnWithdrawn) -> None:
        """Opens the watch (inside the event loop: it owns a channel and a task)."""
        if not self.watch:
            return

        async def on_change(change: consent_pb2.ConsentChange) -> None:
            if change.kind == consent_pb2.CONSENT_CHANGE_KIND_GRANTED:
                return
            try:
                await on_withdrawn(change.consent.patient_id, int(change.consent.category))
            except Exception:
                logger.exception("acting on a consent change failed")

        self.watcher = ConsentWatcher(self.clients, max_staleness_seconds=1.0)
        self.watcher.subscribe(on_change)
        await self.watcher.start()

    async def stop(self) -> None:
        if self.watcher is not None:
            await self.watcher.stop()

    async def is_permitted(self, patient_id: str, category: int) -> bool:
        """Whether the patient's consent permits `category` now; raises Unavailable when
        consent cannot be reached (fail closed)."""
        if self.watcher is not None:
            return await self.watcher.is_permitted(patient_id, category)
        stub = consent_pb2_grpc.ConsentServiceStub(self.clients.channel("consent"))
        try:
            reply = await stub.CheckConsent(
                consent_pb2.CheckConsentRequest(
                    patient_id=patient_id, category=consent_pb2.ConsentCategory.ValueType(category)
                ),
                timeout=5.0,
            )
        except grpc.aio.AioRpcError as error:
            raise from_rpc_error(error, "consent") from None
        return reply.decision == consent_pb2.DECISION_PERMIT
