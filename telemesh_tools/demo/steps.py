"""The steps of a video visit through the public API, for the demo and the tests.

Every step goes through the generated stubs of running services (directly, or through
the edge): nothing here reaches into a service's tables. Once a visit is booked, every
call about it carries the visit's `traceparent`, as a client app does, so the whole
visit lands in one trace.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import grpc

from telemesh.consent.v1 import consent_pb2, consent_pb2_grpc
from telemesh.identity.tokens import DevIssuer
from telemesh.session.v1 import session_pb2, session_pb2_grpc
from telemesh.timestamps import timestamp as ts

Metadata = tuple[tuple[str, str], ...]
CONSENT_TEXT = b"I agree to receive care by video visit. (Telemesh sample consent text 2026-01)"
ALL_WEEK = [
    session_pb2.WeeklyHours(
        day=session_pb2.DayOfWeek.ValueType(d), start_local_time="00:00", end_local_time="24:00"
    )
    for d in range(1, 8)
]


def rid() -> str:
    return str(uuid.uuid4())


@dataclass
class Visit:
    """A booked visit and who takes part in it."""

    visit_id: str
    patient_id: str
    clinician_id: str
    patient: Metadata
    clinician: Metadata
    start_time: datetime
    traceparent: str = ""


def bearer(token: str) -> Metadata:
    return (("authorization", f"Bearer {token}"),)


class VisitSteps:
    """Visit steps against running services; `channel_for(service)` gives a channel to
    each one (its own address, or the edge), `issuer` the users' dev tokens."""

    def __init__(self, channel_for: Callable[[str], grpc.aio.Channel], issuer: DevIssuer) -> None:
        self._channel_for = channel_for
        self.issuer = issuer
        self._channels: dict[str, grpc.aio.Channel] = {}

    def user(self, role: str, subject: str) -> Metadata:
        return bearer(self.issuer.mint(subject, role))

    def channel(self, service: str) -> grpc.aio.Channel:
        if service not in self._channels:
            self._channels[service] = self._channel_for(service)
        return self._channels[service]

    @property
    def session(self) -> session_pb2_grpc.SessionServiceAsyncStub:
        return session_pb2_grpc.SessionServiceStub(self.channel("session"))

    @property
    def consent(self) -> consent_pb2_grpc.ConsentServiceAsyncStub:
        return consent_pb2_grpc.ConsentServiceStub(self.channel("consent"))

    async def close(self) -> None:
        for channel in self._channels.values():
            await channel.close()

    async def clinician(
        self,
        clinician_id: str | None = None,
        *,
        time_zone: str = "UTC",
        hours: list[session_pb2.WeeklyHours] | None = None,
        slot_minutes: int = 5,
        practice_id: str = "practice-1",
    ) -> tuple[str, Metadata]:
        """A clinician with weekly hours (all week, all day by default)."""
        clinician_id = clinician_id or f"c-{uuid.uuid4().hex[:8]}"
        md = self.user("clinician", clinician_id)
        await self.session.CreateClinician(
            session_pb2.CreateClinicianRequest(
                request_id=rid(),
                clinician=session_pb2.Clinician(
                    clinician_id=clinician_id,
                    display_name="Dr. Ada Quill",
                    time_zone=time_zone,
                    practice_id=practice_id,
                ),
            ),
            metadata=md,
        )
        await self.session.SetWeeklyAvailability(
            session_pb2.SetWeeklyAvailabilityRequest(
                request_id=rid(),
                clinician_id=clinician_id,
                hours=hours if hours is not None else ALL_WEEK,
                slot_minutes=slot_minutes,
            ),
            metadata=md,
        )
        return clinician_id, md

    async def patient(
        self,
        patient_id: str | None = None,
        *,
        display_name: str = "Pat Example",
        birth_date: str = "1980-01-02",
        email: str = "pat@example.org",
        phone: str = "+1 555 0100",
    ) -> tuple[str, Metadata]:
        patient_id = patient_id or f"p-{uuid.uuid4().hex[:8]}"
        md = self.user("patient", patient_id)
        await self.session.CreatePatient(
            session_pb2.CreatePatientRequest(
                request_id=rid(),
                patient=session_pb2.Patient(
                    patient_id=patient_id,
                    display_name=display_name,
                    birth_date=birth_date,
                    email=email,
                    phone=phone,
                ),
            ),
            metadata=md,
        )
        return patient_id, md

    async def next_slot(self, clinician_id: str, md: Metadata, skip: int = 0) -> datetime:
        # A slot that starts within seconds may start before the booking reaches the
        # service ("must be in the future"): leave a margin.
        now = datetime.now(UTC) + timedelta(seconds=30)
        reply = await self.session.ListSlots(
            session_pb2.ListSlotsRequest(
                clinician_id=clinician_id,
                start_time=ts(now),
                end_time=ts(now + timedelta(days=2)),
                page_size=skip + 1,
            ),
            metadata=md,
        )
        return reply.slots[skip].start_time.ToDatetime(tzinfo=UTC)

    async def book(self, **patient: str) -> Visit:
        """A clinician and a patient with a visit booked in the next free slot."""
        clinician_id, clinician_md = await self.clinician()
        patient_id, patient_md = await self.patient(**patient)
        start = await self.next_slot(clinician_id, patient_md)
        reply = await self.session.BookVisit(
            session_pb2.BookVisitRequest(
                request_id=rid(),
                clinician_id=clinician_id,
                patient_id=patient_id,
                start_time=ts(start),
            ),
            metadata=patient_md,
        )
        trace = (("traceparent", reply.visit.traceparent),)
        return Visit(
            reply.visit.visit_id,
            patient_id,
            clinician_id,
            patient_md + trace,
            clinician_md + trace,
            start,
            reply.visit.traceparent,
        )

    async def grant_telehealth(self, visit: Visit) -> consent_pb2.Consent:
        reply = await self.consent.GrantConsent(
            consent_pb2.GrantConsentRequest(
                request_id=rid(),
                patient_id=visit.patient_id,
                category=consent_pb2.ConsentCategory.CONSENT_CATEGORY_TELEHEALTH,
                text_version="2026-01",
                text_sha256=hashlib.sha256(CONSENT_TEXT).hexdigest(),
                capture_method=consent_pb2.CaptureMethod.CAPTURE_METHOD_IN_APP,
            ),
            metadata=visit.patient,
        )
        return reply.consent

    async def check_in(
        self,
        visit: Visit,
        location: session_pb2.PatientLocation.ValueType = session_pb2.PATIENT_LOCATION_HOME,
    ) -> session_pb2.Visit:
        reply = await self.session.CheckIn(
            session_pb2.CheckInRequest(
                request_id=rid(), visit_id=visit.visit_id, patient_location=location
            ),
            metadata=visit.patient,
        )
        return reply.visit

    async def ready_visit(self, **patient: str) -> Visit:
        """Booked, consented and checked in: both participants may take join tokens."""
        visit = await self.book(**patient)
        await self.grant_telehealth(visit)
        await self.check_in(visit)
        return visit

    async def join_token(self, visit: Visit, role: str) -> str:
        md = visit.patient if role == "patient" else visit.clinician
        reply = await self.session.IssueJoinToken(
            session_pb2.IssueJoinTokenRequest(visit_id=visit.visit_id), metadata=md
        )
        return reply.join_token

    async def admit(self, visit: Visit) -> session_pb2.Visit:
        reply = await self.session.AdmitPatient(
            session_pb2.AdmitPatientRequest(request_id=rid(), visit_id=visit.visit_id),
            metadata=visit.clinician,
        )
        return reply.visit

    async def complete(
        self, visit: Visit, codes: tuple[str, ...] = ("J06.9",), audio_only: bool = False
    ) -> session_pb2.Visit:
        reply = await self.session.CompleteVisit(
            session_pb2.CompleteVisitRequest(
                request_id=rid(),
                visit_id=visit.visit_id,
                diagnosis_codes=codes,
                audio_only=audio_only,
            ),
            metadata=visit.clinician,
        )
        return reply.visit
