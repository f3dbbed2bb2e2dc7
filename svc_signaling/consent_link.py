"""Consent for a room: checks that fail closed, and changes that act at once.

The shared `ConsentWatcher` keeps a fresh view of consents from the consent service's
watch stream: a check answers from it (or asks the service), and every change reaches
`on_withdrawn` within about a second. With TELEMESH_SIGNALING_CONSENT_WATCH off the
watcher is never started, so every check goes to ConsentService.CheckConsent and changes
are not watched.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from telemesh.clients import ServiceClients
from telemesh.consent.v1 import consent_pb2
from telemesh.consent_watch import ConsentWatcher

logger = logging.getLogger("telemesh.signaling.consent")

TELEHEALTH = consent_pb2.CONSENT_CATEGORY_TELEHEALTH
RECORDING = consent_pb2.CONSENT_CATEGORY_RECORDING

# Called with (patient_id, category) when a consent may have stopped permitting.
OnWithdrawn = Callable[[str, int], Awaitable[None]]


class ConsentLink:
    def __init__(self, clients: ServiceClients, watch: bool) -> None:
        self.clients = clients
        self.watch = watch
        self._watcher: ConsentWatcher | None = None

    async def start(self, on_withdrawn: OnWithdrawn) -> None:
        """Builds the watcher and, when watching, opens the watch (inside the event loop:
        it owns a channel and a task)."""
        self._watcher = ConsentWatcher(self.clients, max_staleness_seconds=1.0)
        if not self.watch:
            return

        async def on_change(change: consent_pb2.ConsentChange) -> None:
            if change.kind == consent_pb2.CONSENT_CHANGE_KIND_GRANTED:
                return
            try:
                await on_withdrawn(change.consent.patient_id, int(change.consent.category))
            except Exception:
                logger.exception("acting on a consent change failed")

        self._watcher.subscribe(on_change)
        await self._watcher.start()

    async def stop(self) -> None:
        if self._watcher is not None:
            await self._watcher.stop()

    async def is_permitted(self, patient_id: str, category: int) -> bool:
        """Whether the patient's consent permits `category` now; raises Unavailable when
        consent cannot be reached (fail closed)."""
        assert self._watcher is not None, "the consent link has not started"
        return await self._watcher.is_permitted(patient_id, category)
