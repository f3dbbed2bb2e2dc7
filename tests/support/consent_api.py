"""A small client of ConsentService for tests: calls as a chosen caller."""

from __future__ import annotations

import contextlib
import hashlib
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any

import grpc
from sqlalchemy import Engine, create_engine

from telemesh.consent.v1 import consent_pb2 as P
from telemesh.consent.v1 import consent_pb2_grpc
from telemesh.db import sync_url
from telemesh.session.v1 import session_pb2
from telemesh.timestamps import timestamp
from tests.support.flows import Flows, rid
from tests.support.harness import Stack

Metadata = tuple[tuple[str, str], ...]

TEXT_SHA256 = hashlib.sha256(b"Telehealth consent text, version 2026-03").hexdigest()
TELEHEALTH = P.CONSENT_CATEGORY_TELEHEALTH
RECORDING = P.CONSENT_CATEGORY_RECORDING
SHARING = P.CONSENT_CATEGORY_PARTNER_SHARING


def new_patient() -> str:
    return f"p-{uuid.uuid4().hex[:10]}"


class ConsentApi:
    """ConsentService called as whoever a test says (a patient by default for changes,
    the session service for checks, an administrator for the audit trail). Patients get
    a profile in the session service before their first change (no consent for a
    patient who does not exist)."""

    def __init__(self, stack: Stack, channel: grpc.aio.Channel) -> None:
        self.stack = stack
        self.tokens = stack.tokens
        self.stub = consent_pb2_grpc.ConsentServiceStub(channel)
        self.flows = Flows(stack)
        self.admin = self.tokens.role("admin", "admin-1")
        self.checker = self.tokens.service("session")
        self._profiles: set[str] = set()

    async def ensure_patient(self, patient_id: str) -> None:
        if patient_id in self._profiles:
            return
        with contextlib.suppress(grpc.aio.AioRpcError):  # ALREADY_EXISTS
            await self.flows.patient(patient_id)
        self._profiles.add(patient_id)

    async def treating_clinician(self, patient_id: str) -> tuple[str, Metadata]:
        """A clinician (id, caller) with a care relationship to the patient (a booked
        visit)."""
        await self.ensure_patient(patient_id)
        clinician_id, clinician_md = await self.flows.clinician()
        patient_md = self.tokens.patient(patient_id)
        start = await self.flows.next_slot(clinician_id, patient_md)
        await self.flows.session.BookVisit(
            session_pb2.BookVisitRequest(
                request_id=rid(),
                clinician_id=clinician_id,
                patient_id=patient_id,
                start_time=timestamp(start),
            ),
            metadata=patient_md,
        )
        return clinician_id, clinician_md

    async def grant(
        self, patient_id: str, category: P.ConsentCategory.ValueType = TELEHEALTH, **fields: Any
    ) -> P.Consent:
        caller = fields.pop("caller", None) or self.tokens.patient(patient_id)
        if fields.pop("profile", True):
            await self.ensure_patient(patient_id)
        request = P.GrantConsentRequest(
            request_id=rid(),
            patient_id=patient_id,
            category=category,
            text_version="2026-03",
            text_sha256=TEXT_SHA256,
        )
        for name, value in fields.items():
            if isinstance(value, datetime):
                getattr(request, name).CopyFrom(timestamp(value))
            else:
                setattr(request, name, value)
        response = await self.stub.GrantConsent(request, metadata=caller)
        return response.consent

    async def reject(
        self, patient_id: str, category: P.ConsentCategory.ValueType = TELEHEALTH, **fields: Any
    ) -> P.Consent:
        caller = fields.pop("caller", None) or self.tokens.patient(patient_id)
        await self.ensure_patient(patient_id)
        request = P.RejectConsentRequest(
            request_id=rid(),
            patient_id=patient_id,
            category=category,
            text_version="2026-03",
            text_sha256=TEXT_SHA256,
            **fields,
        )
        response = await self.stub.RejectConsent(request, metadata=caller)
        return response.consent

    async def revoke(self, consent: P.Consent, caller: Metadata | None = None) -> P.Consent:
        response = await self.stub.RevokeConsent(
            P.RevokeConsentRequest(
                request_id=rid(),
                consent_id=consent.consent_id,
                expected_version=consent.version,
            ),
            metadata=caller or self.tokens.patient(consent.patient_id),
        )
        return response.consent

    async def check(
        self,
        patient_id: str,
        category: P.ConsentCategory.ValueType = TELEHEALTH,
        partner_clinic_id: str = "",
        *,
        at: datetime | None = None,
        caller: Metadata | None = None,
    ) -> P.CheckConsentResponse:
        request = P.CheckConsentRequest(
            patient_id=patient_id, category=category, partner_clinic_id=partner_clinic_id
        )
        if at is not None:
            request.at_time.CopyFrom(timestamp(at))
        return await self.stub.CheckConsent(request, metadata=caller or self.checker)

    async def versions(self, consent_id: str) -> list[P.Consent]:
        response = await self.stub.ListConsentVersions(
            P.ListConsentVersionsRequest(consent_id=consent_id), metadata=self.admin
        )
        return list(response.versions)

    async def audit(self, patient_id: str = "") -> list[P.AuditEntry]:
        """Every audit entry (about one patient), through every page."""
        entries: list[P.AuditEntry] = []
        token = ""
        while True:
            page = await self.stub.ListAuditEntries(
                P.ListAuditEntriesRequest(patient_id=patient_id, page_size=500, page_token=token),
                metadata=self.admin,
            )
            entries.extend(page.entries)
            token = page.next_page_token
            if not token:
                return entries

    async def verify(self) -> P.VerifyAuditTrailResponse:
        return await self.stub.VerifyAuditTrail(P.VerifyAuditTrailRequest(), metadata=self.admin)


@asynccontextmanager
async def consent_api(stack: Stack) -> AsyncIterator[ConsentApi]:
    async with stack.channel("consent") as channel:
        api = ConsentApi(stack, channel)
        try:
            yield api
        finally:
            await api.flows.close()


def consent_database(stack: Stack) -> Engine:
    """A direct connection to the consent service's own database (for tampering)."""
    url = stack["consent"].env["TELEMESH_DATABASE_URL"]
    return create_engine(sync_url(url))
