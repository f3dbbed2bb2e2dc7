"""SessionService: each RPC validates, authorizes and runs in one transaction; the
domain rules live in the modules it calls."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

import grpc
from sqlmodel.ext.asyncio.session import AsyncSession

from svc_session import access_log, availability, booking, care, join_tokens, profiles, visits
from svc_session.access import NotParticipant
from telemesh.auth import current_principal, require_role, require_service
from telemesh.errors import PermissionDenied
from telemesh.idempotency import run_idempotent
from telemesh.paging import decode_token, page_of, page_size
from telemesh.session.v1 import session_pb2, session_pb2_grpc

if TYPE_CHECKING:
    from svc_session.settings import SessionSettings
    from telemesh.care import PatientAccess
    from telemesh.db import Database
    from telemesh.field_crypto import FieldCipher
    from telemesh.identity.signing_keys import SigningKey

Context = grpc.aio.ServicerContext[Any, Any]
P = session_pb2


class _AboutAVisit(Protocol):
    @property
    def visit(self) -> session_pb2.Visit: ...


VisitAnswer = TypeVar("VisitAnswer", bound=_AboutAVisit)


@dataclass(frozen=True)
class SessionDependencies:
    """What the servicer needs, built by the app (svc_session.app)."""

    db: Database
    cipher: FieldCipher
    access: PatientAccess
    settings: SessionSettings
    join_key: SigningKey
    # Whether the patient's telehealth consent permits a visit now (fail closed).
    telehealth_permitted: Callable[[str], Awaitable[bool]]
    # New outbox events were committed: the relay looks now.
    outbox_committed: Callable[[], None]


class SessionServicer(session_pb2_grpc.SessionServiceServicer):
    def __init__(self, deps: SessionDependencies) -> None:
        self.deps = deps
        self.db = deps.db
        self.cipher = deps.cipher
        self.access = deps.access

    async def _about_visit(self, work: Awaitable[VisitAnswer]) -> VisitAnswer:
        """Runs an RPC about one visit and puts it in the access log: the visit's patient
        when it was answered; the refusal (not a participant) when it was not."""
        try:
            response = await work
        except NotParticipant as refusal:
            await self.access.refused(refusal.patient_id, refusal.reason)
            raise
        await self.access.log_reads([response.visit.patient_id])
        return response

    # --- people ----------------------------------------------------------------

    async def CreatePatient(
        self, request: P.CreatePatientRequest, context: Context
    ) -> P.CreatePatientResponse:
        response = await run_idempotent(
            self.db,
            "CreatePatient",
            request,
            P.CreatePatientResponse,
            lambda s: profiles.create_patient(s, self.cipher, request),
            cipher=self.cipher,
        )
        await self.access.log_reads([response.patient.patient_id])
        return response

    async def GetPatient(
        self, request: P.GetPatientRequest, context: Context
    ) -> P.GetPatientResponse:
        profiles.check_patient_id(request.patient_id)
        await self.access.require(request.patient_id)
        async with self.db.read() as session:
            return await profiles.get_patient(session, self.cipher, request)

    async def CreateClinician(
        self, request: P.CreateClinicianRequest, context: Context
    ) -> P.CreateClinicianResponse:
        return await run_idempotent(
            self.db,
            "CreateClinician",
            request,
            P.CreateClinicianResponse,
            lambda s: profiles.create_clinician(s, self.cipher, request),
            cipher=self.cipher,
        )

    async def GetClinician(
        self, request: P.GetClinicianRequest, context: Context
    ) -> P.GetClinicianResponse:
        async with self.db.read() as session:
            return await profiles.get_clinician(session, self.cipher, request)

    # --- availability ------------------------------------------------------------

    async def SetWeeklyAvailability(
        self, request: P.SetWeeklyAvailabilityRequest, context: Context
    ) -> P.SetWeeklyAvailabilityResponse:
        return await run_idempotent(
            self.db,
            "SetWeeklyAvailability",
            request,
            P.SetWeeklyAvailabilityResponse,
            lambda s: availability.set_weekly(s, request),
        )

    async def AddAvailabilityException(
        self, request: P.AddAvailabilityExceptionRequest, context: Context
    ) -> P.AddAvailabilityExceptionResponse:
        return await run_idempotent(
            self.db,
            "AddAvailabilityException",
            request,
            P.AddAvailabilityExceptionResponse,
            lambda s: availability.add_exception(s, request),
        )

    async def DeleteAvailabilityException(
        self, request: P.DeleteAvailabilityExceptionRequest, context: Context
    ) -> P.DeleteAvailabilityExceptionResponse:
        return await run_idempotent(
            self.db,
            "DeleteAvailabilityException",
            request,
            P.DeleteAvailabilityExceptionResponse,
            lambda s: availability.delete_exception(s, request),
        )

    async def ListAvailabilityExceptions(
        self, request: P.ListAvailabilityExceptionsRequest, context: Context
    ) -> P.ListAvailabilityExceptionsResponse:
        async with self.db.read() as session:
            return await availability.list_exceptions(session, request)

    async def ListSlots(self, request: P.ListSlotsRequest, context: Context) -> P.ListSlotsResponse:
        async with self.db.read() as session:
            return await availability.list_slots(session, request)

    # --- booking -------------------------------------------------------------------

    async def BookVisit(self, request: P.BookVisitRequest, context: Context) -> P.BookVisitResponse:
        start = booking.checked_start(request)
        # A clinician books only for a patient they already have a care relationship
        # with; a first visit is booked by the patient (or an admin).
        await self.access.require(request.patient_id)
        return await run_idempotent(
            self.db,
            "BookVisit",
            request,
            P.BookVisitResponse,
            lambda s: booking.book(s, request, start),
        )

    async def CancelVisit(
        self, request: P.CancelVisitRequest, context: Context
    ) -> P.CancelVisitResponse:
        response = await self._about_visit(
            run_idempotent(
                self.db,
                "CancelVisit",
                request,
                P.CancelVisitResponse,
                lambda s: booking.cancel(s, request),
            )
        )
        self.deps.outbox_committed()
        return response

    async def RescheduleVisit(
        self, request: P.RescheduleVisitRequest, context: Context
    ) -> P.RescheduleVisitResponse:
        return await self._about_visit(
            run_idempotent(
                self.db,
                "RescheduleVisit",
                request,
                P.RescheduleVisitResponse,
                lambda s: booking.reschedule(s, request),
            )
        )

    async def MarkNoShow(
        self, request: P.MarkNoShowRequest, context: Context
    ) -> P.MarkNoShowResponse:
        grace = timedelta(minutes=self.deps.settings.no_show_grace_minutes)
        response = await self._about_visit(
            run_idempotent(
                self.db,
                "MarkNoShow",
                request,
                P.MarkNoShowResponse,
                lambda s: booking.mark_no_show(s, request, grace),
            )
        )
        self.deps.outbox_committed()
        return response

    # --- the visit's life --------------------------------------------------------------

    async def GetVisit(self, request: P.GetVisitRequest, context: Context) -> P.GetVisitResponse:
        async def read() -> P.GetVisitResponse:
            async with self.db.read() as session:
                return await visits.get(session, self.cipher, request)

        return await self._about_visit(read())

    async def ListVisits(
        self, request: P.ListVisitsRequest, context: Context
    ) -> P.ListVisitsResponse:
        try:
            async with self.db.read() as session:
                response = await visits.list_visits(session, self.cipher, request)
        except PermissionDenied as refusal:
            if request.patient_id:  # someone else's visits asked for by patient id
                await self.access.refused(request.patient_id, refusal.reason)
            raise
        await self.access.log_reads([visit.patient_id for visit in response.visits])
        return response

    async def CheckIn(self, request: P.CheckInRequest, context: Context) -> P.CheckInResponse:
        window = timedelta(minutes=self.deps.settings.join_window_before_minutes)
        return await self._about_visit(
            run_idempotent(
                self.db,
                "CheckIn",
                request,
                P.CheckInResponse,
                lambda s: visits.check_in(s, request, window),
            )
        )

    async def AdmitPatient(
        self, request: P.AdmitPatientRequest, context: Context
    ) -> P.AdmitPatientResponse:
        return await self._about_visit(
            run_idempotent(
                self.db,
                "AdmitPatient",
                request,
                P.AdmitPatientResponse,
                lambda s: visits.admit(s, request),
            )
        )

    async def CompleteVisit(
        self, request: P.CompleteVisitRequest, context: Context
    ) -> P.CompleteVisitResponse:
        response = await self._about_visit(
            run_idempotent(
                self.db,
                "CompleteVisit",
                request,
                P.CompleteVisitResponse,
                lambda s: visits.complete(s, self.cipher, request),
                cipher=self.cipher,  # the answer holds the diagnosis codes
            )
        )
        self.deps.outbox_committed()
        visits.record_root_span(response.visit)
        return response

    async def RecordConnectionEvent(
        self, request: P.RecordConnectionEventRequest, context: Context
    ) -> P.RecordConnectionEventResponse:
        return await run_idempotent(
            self.db,
            "RecordConnectionEvent",
            request,
            P.RecordConnectionEventResponse,
            lambda s: visits.record_connection(s, request),
        )

    # --- join tokens ---------------------------------------------------------------------

    async def IssueJoinToken(
        self, request: P.IssueJoinTokenRequest, context: Context
    ) -> P.IssueJoinTokenResponse:
        settings = self.deps.settings
        async with self.db.read() as session:
            return await join_tokens.issue(
                session,
                request,
                key=self.deps.join_key,
                ttl_seconds=settings.join_token_ttl_seconds,
                window_before=timedelta(minutes=settings.join_window_before_minutes),
                window_after=timedelta(minutes=settings.join_window_after_minutes),
                telehealth_permitted=self.deps.telehealth_permitted,
            )

    async def GetJoinTokenKeys(
        self, request: P.GetJoinTokenKeysRequest, context: Context
    ) -> P.GetJoinTokenKeysResponse:
        return join_tokens.keys(self.deps.join_key)

    # --- care relationships and the access log -------------------------------------------

    async def CheckCareRelationship(
        self, request: P.CheckCareRelationshipRequest, context: Context
    ) -> P.CheckCareRelationshipResponse:
        return await care.check(self.db, request)

    async def RecordPatientAccess(
        self, request: P.RecordPatientAccessRequest, context: Context
    ) -> P.RecordPatientAccessResponse:
        caller = require_service(*care.ASKING_SERVICES)
        access_log.check_record_request(request, caller.subject)

        async def work(session: AsyncSession) -> P.RecordPatientAccessResponse:
            recorded = await access_log.append(session, request.accesses)
            return P.RecordPatientAccessResponse(recorded_count=recorded)

        return await run_idempotent(
            self.db, "RecordPatientAccess", request, P.RecordPatientAccessResponse, work
        )

    async def ListPatientAccess(
        self, request: P.ListPatientAccessRequest, context: Context
    ) -> P.ListPatientAccessResponse:
        profiles.check_patient_id(request.patient_id)
        size = page_size(request.page_size)
        principal = current_principal()
        if not (principal.is_user("patient", request.patient_id) or principal.role == "admin"):
            raise PermissionDenied(
                "NOT_YOUR_LOG", "a patient lists only their own access log; admins any"
            )
        query = {"method": "ListPatientAccess", "patient_id": request.patient_id}
        cursor = decode_token(request.page_token, query, {"before": int})
        async with self.db.read() as session:
            rows = await access_log.list_entries(
                session, request.patient_id, cursor["before"] if cursor else None, size + 1
            )
        page, token = page_of(rows, size, lambda row: {"before": row.sequence}, query)
        return P.ListPatientAccessResponse(
            entries=[access_log.to_proto(row) for row in page], next_page_token=token
        )

    async def VerifyAccessLog(
        self, request: P.VerifyAccessLogRequest, context: Context
    ) -> P.VerifyAccessLogResponse:
        require_role("admin")
        verdict = await access_log.CHAIN.verify_stored(self.db)
        return P.VerifyAccessLogResponse(**verdict.answer_fields())
