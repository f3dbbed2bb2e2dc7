"""The session service's wiring: database, PHI keys, join-token key, consent gate,
outbox relay and the no-show sweeper, on the shared bootstrap."""

from __future__ import annotations

import functools
import logging
from datetime import timedelta

import grpc

from svc_session import booking
from svc_session.access_log import local_recorder
from svc_session.care import LocalCareSource
from svc_session.phi_rotation import SEALED_COLUMNS
from svc_session.servicer import SessionDependencies, SessionServicer
from svc_session.settings import SessionSettings
from telemesh.app import ServiceAppBase
from telemesh.auth import Principal
from telemesh.background import every
from telemesh.care import PatientAccess
from telemesh.config import RuntimeSettings, load
from telemesh.consent.v1 import consent_pb2
from telemesh.consent_watch import ConsentWatcher
from telemesh.errors import TelemeshError
from telemesh.field_crypto import FieldCipher, service_keyring
from telemesh.identity.signing_keys import SigningKey
from telemesh.logs import log
from telemesh.outbox import grpc_deliverer
from telemesh.session.v1 import session_pb2, session_pb2_grpc

logger = logging.getLogger("svc_session")
SWEEPER = Principal("service", "session")


class SessionApp(ServiceAppBase):
    name = "session"
    package = "svc_session"
    service_names = (session_pb2.DESCRIPTOR.services_by_name["SessionService"].full_name,)
    cipher: FieldCipher

    def __init__(self, settings: RuntimeSettings) -> None:
        super().__init__(settings)
        self.session_settings = load(SessionSettings)
        own = settings.home / "session"
        self.cipher = FieldCipher(
            service_keyring(
                settings.home,
                self.name,
                self.session_settings.phi_keys,
                self.session_settings.phi_key_file,
            )
        )
        self.sealed_columns = SEALED_COLUMNS
        self.join_key = SigningKey.load_or_create(
            self.session_settings.join_key_dir or own / "join-token-key"
        )
        self.consent: ConsentWatcher | None = None

    async def register(self, server: grpc.aio.Server) -> None:
        # Care relationships are decided here, from this service's own tables.
        access = PatientAccess(LocalCareSource(self.db), local_recorder(self.db))
        self.consent = ConsentWatcher(self.clients, max_staleness_seconds=1.0)
        servicer = SessionServicer(
            SessionDependencies(
                db=self.db,
                cipher=self.cipher,
                access=access,
                settings=self.session_settings,
                join_key=self.join_key,
                telehealth_permitted=self.telehealth_permitted,
                outbox_committed=self.outbox_committed,
            )
        )
        session_pb2_grpc.add_SessionServiceServicer_to_server(servicer, server)
        if self.session_settings.outbox_relay:
            self.relay_outbox(grpc_deliverer(self.clients.channel, cipher=self.cipher))
        self.background(
            every(
                "no-show-sweeper",
                lambda: self.session_settings.no_show_sweep_seconds,
                self._sweep_no_shows,
            )
        )
        self.background(self.consent)

    async def telehealth_permitted(self, patient_id: str) -> bool:
        """Asks consent (through the watcher's cache, which a revocation clears within a
        second); no answer raises Unavailable: no token (fail closed)."""
        assert self.consent is not None, "the app has not started"
        return await self.consent.is_permitted(
            patient_id, consent_pb2.ConsentCategory.CONSENT_CATEGORY_TELEHEALTH
        )

    async def _sweep_no_shows(self) -> None:
        """Marks booked visits nobody checked in to as no-shows, once their grace ends."""
        grace = timedelta(minutes=self.session_settings.no_show_grace_minutes)
        async with self.db.read() as session:
            overdue = await booking.overdue_visits(session, grace)
        for visit_id in overdue:
            mark = functools.partial(
                booking.mark_no_show,
                principal=SWEEPER,
                visit_id=visit_id,
                grace=grace,
                by_sweeper=True,
            )
            try:
                await self.db.run_write(mark)
            except TelemeshError:
                continue  # someone checked in or cancelled meanwhile
            self.outbox_committed()
            log(logger, logging.INFO, "visit marked no-show", visit_id=visit_id)
