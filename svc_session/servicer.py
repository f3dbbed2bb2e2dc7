"""SessionService: each RPC decodes its request (`requests`), calls the domain module
that does the work in one transaction with the caller named (`profiles`,
`availability`, `booking`, `visits`, `join_tokens`, `care`, `access_log`) and encodes
the answer (`convert`). Accesses to a patient's record go to the access log here."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Protocol, TypeVar, cast

import grpc
from google.protobuf.message import Message
from sqlmodel.ext.asyncio.session import AsyncSession

from svc_session import (
    access_log,
    availability,
    booking,
    care,
    convert,
    join_tokens,
    profiles,
    requests,
    visits,
)
from svc_session.access import NotParticipant, may_read_access_log, sees_clinician_phi
from svc_session.models import VisitRow
from telemesh import metrics
from telemesh.auth import current_principal, require_role, require_service
from telemesh.errors import PermissionDenied
from telemesh.idempotency import run_idempotent
from telemesh.paging import decode_token, page_of
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
    """An answer about one visit (every such response has its `visit`)."""

    @property
    def visit(self) -> session_pb2.Visit: ...


VisitAnswer = TypeVar("VisitAnswer", bound=Message)


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


def _count_verify_failures(amount: int) -> None:
    metrics.count(
        "telemesh.audit.verify_failures",
        "Audit chain verifications that found the chain broken, by chain",
        amount,
        chain="access_log",
    )


class SessionServicer(session_pb2_grpc.SessionServiceServicer):
    def __init__(self, deps: SessionDependencies) -> None:
        self.deps = deps
        self.db = deps.db
        self.cipher = deps.cipher
        self.access = deps.access
        # How long before a visit's start its patient may check in (the join window).
        self.check_in_window = timedelta(minutes=deps.settings.join_window_before_minutes)
        # At zero from the start, so that the first failure is an increase Prometheus sees.
        _count_verify_failures(0)

    async def _about_visit(self, work: Awaitable[VisitAnswer]) -> VisitAnswer:
        """Runs an RPC about one visit and puts it in the access log: the visit's patient
        when it was answered; the refusal (not a participant) when it was not."""
        try:
            response = await work
        except NotParticipant as refusal:
            await self.access.refused(refusal.patient_id, refusal.reason)
            raise
        await self.access.log_reads([cast("_AboutAVisit", response).visit.patient_id])
        return response

    async def _changing_visit(
        self,
        method: str,
        request: Message,
        response_type: type[VisitAnswer],
        change: Callable[[AsyncSession], Awaitable[VisitRow]],
        *,
        with_codes: bool = False,
    ) -> VisitAnswer:
        """A change to one visit in one idempotent transaction, answered with the visit
        as it is now (its diagnosis codes too when `with_codes`: the stored answer is
        then sealed), and put in the access log (`_about_visit`)."""
        cipher = self.cipher if with_codes else None

        async def work(session: AsyncSession) -> VisitAnswer:
            row = await change(session)
            shown = await convert.visit(
                session, row, check_in_window=self.check_in_window, cipher=cipher
            )
            return response_type(visit=shown)

        return await self._about_visit(
            run_idempotent(self.db, method, request, response_type, work, cipher=cipher)
        )

    # --- people ----------------------------------------------------------------

    async def CreatePatient(
        self, request: P.CreatePatientRequest, context: Context
    ) -> P.CreatePatientResponse:
        principal = current_principal()
        person = requests.new_patient(request, principal)

        async def work(session: AsyncSession) -> P.CreatePatientResponse:
            row = await profiles.create_patient(session, self.cipher, principal, person)
            return P.CreatePatientResponse(patient=convert.patient(self.cipher, row))

        response = await run_idempotent(
            self.db, "CreatePatient", request, P.CreatePatientResponse, work, cipher=self.cipher
        )
        await self.access.log_reads([response.patient.patient_id])
        return response

    async def GetPatient(
        self, request: P.GetPatientRequest, context: Context
    ) -> P.GetPatientResponse:
        patient_id = requests.identifier("patient_id", request.patient_id)
        await self.access.require(patient_id)
        async with self.db.read() as session:
            row = await profiles.load_patient(session, patient_id)
        return P.GetPatientResponse(patient=convert.patient(self.cipher, row))

    async def CreateClinician(
        self, request: P.CreateClinicianRequest, context: Context
    ) -> P.CreateClinicianResponse:
        principal = current_principal()
        wanted = requests.new_clinician(request, principal)

        async def work(session: AsyncSession) -> P.CreateClinicianResponse:
            row = await profiles.create_clinician(session, self.cipher, principal, wanted)
            return P.CreateClinicianResponse(
                clinician=convert.clinician(self.cipher, row, with_phi=True)
            )

        return await run_idempotent(
            self.db,
            "CreateClinician",
            request,
            P.CreateClinicianResponse,
            work,
            cipher=self.cipher,
        )

    async def GetClinician(
        self, request: P.GetClinicianRequest, context: Context
    ) -> P.GetClinicianResponse:
        principal = current_principal()
        clinician_id = requests.identifier("clinician_id", request.clinician_id)
        async with self.db.read() as session:
            row = await profiles.load_clinician(session, clinician_id)
        with_phi = sees_clinician_phi(principal, clinician_id)
        return P.GetClinicianResponse(
            clinician=convert.clinician(self.cipher, row, with_phi=with_phi)
        )

    # --- availability ------------------------------------------------------------

    async def SetWeeklyAvailability(
        self, request: P.SetWeeklyAvailabilityRequest, context: Context
    ) -> P.SetWeeklyAvailabilityResponse:
        principal = current_principal()
        wanted = requests.weekly_hours(request)

        async def work(session: AsyncSession) -> P.SetWeeklyAvailabilityResponse:
            row = await availability.set_weekly(session, principal, wanted)
            return P.SetWeeklyAvailabilityResponse(availability=convert.availability(row))

        return await run_idempotent(
            self.db, "SetWeeklyAvailability", request, P.SetWeeklyAvailabilityResponse, work
        )

    async def GetWeeklyAvailability(
        self, request: P.GetWeeklyAvailabilityRequest, context: Context
    ) -> P.GetWeeklyAvailabilityResponse:
        principal = current_principal()
        clinician_id = requests.identifier("clinician_id", request.clinician_id)
        async with self.db.read() as session:
            row = await availability.weekly(session, principal, clinician_id)
        return P.GetWeeklyAvailabilityResponse(availability=convert.availability(row))

    async def AddAvailabilityException(
        self, request: P.AddAvailabilityExceptionRequest, context: Context
    ) -> P.AddAvailabilityExceptionResponse:
        principal = current_principal()
        wanted = requests.new_exception(request)

        async def work(session: AsyncSession) -> P.AddAvailabilityExceptionResponse:
            row = await availability.add_exception(session, principal, wanted)
            return P.AddAvailabilityExceptionResponse(exception=convert.availability_exception(row))

        return await run_idempotent(
            self.db, "AddAvailabilityException", request, P.AddAvailabilityExceptionResponse, work
        )

    async def DeleteAvailabilityException(
        self, request: P.DeleteAvailabilityExceptionRequest, context: Context
    ) -> P.DeleteAvailabilityExceptionResponse:
        principal = current_principal()
        exception_id = requests.required("exception_id", request.exception_id)

        async def work(session: AsyncSession) -> P.DeleteAvailabilityExceptionResponse:
            await availability.delete_exception(session, principal, exception_id)
            return P.DeleteAvailabilityExceptionResponse()

        return await run_idempotent(
            self.db,
            "DeleteAvailabilityException",
            request,
            P.DeleteAvailabilityExceptionResponse,
            work,
        )

    async def ListAvailabilityExceptions(
        self, request: P.ListAvailabilityExceptionsRequest, context: Context
    ) -> P.ListAvailabilityExceptionsResponse:
        principal = current_principal()
        wanted = requests.exception_query(request)
        async with self.db.read() as session:
            rows, token = await availability.list_exceptions(session, principal, wanted)
        return P.ListAvailabilityExceptionsResponse(
            exceptions=[convert.availability_exception(row) for row in rows],
            next_page_token=token,
        )

    async def ListSlots(self, request: P.ListSlotsRequest, context: Context) -> P.ListSlotsResponse:
        current_principal()  # any signed-in user may look for slots
        wanted = requests.slot_query(request)
        async with self.db.read() as session:
            free, token = await availability.free_slots(session, wanted)
        return P.ListSlotsResponse(
            slots=convert.slots(wanted.clinician_id, free), next_page_token=token
        )

    # --- booking -------------------------------------------------------------------

    async def BookVisit(self, request: P.BookVisitRequest, context: Context) -> P.BookVisitResponse:
        principal = current_principal()
        wanted = requests.booking(request)
        # A clinician books only for a patient they already have a care relationship
        # with; a first visit is booked by the patient (or an admin).
        await self.access.require(wanted.patient_id)

        async def work(session: AsyncSession) -> P.BookVisitResponse:
            booked = await booking.book(session, principal, wanted)
            visit = await convert.visit(
                session,
                booked.visit,
                check_in_window=self.check_in_window,
                transitions=[booked.first_transition],
                periods=[],
            )
            return P.BookVisitResponse(visit=visit)

        return await run_idempotent(self.db, "BookVisit", request, P.BookVisitResponse, work)

    async def CancelVisit(
        self, request: P.CancelVisitRequest, context: Context
    ) -> P.CancelVisitResponse:
        principal = current_principal()
        wanted = requests.cancellation(request)
        response = await self._changing_visit(
            "CancelVisit",
            request,
            P.CancelVisitResponse,
            lambda session: booking.cancel(session, principal, wanted),
        )
        self.deps.outbox_committed()
        return response

    async def RescheduleVisit(
        self, request: P.RescheduleVisitRequest, context: Context
    ) -> P.RescheduleVisitResponse:
        principal = current_principal()
        wanted = requests.rescheduling(request)
        return await self._changing_visit(
            "RescheduleVisit",
            request,
            P.RescheduleVisitResponse,
            lambda session: booking.reschedule(session, principal, wanted),
        )

    async def MarkNoShow(
        self, request: P.MarkNoShowRequest, context: Context
    ) -> P.MarkNoShowResponse:
        principal = current_principal()
        visit_id = requests.required("visit_id", request.visit_id)
        grace = timedelta(minutes=self.deps.settings.no_show_grace_minutes)
        response = await self._changing_visit(
            "MarkNoShow",
            request,
            P.MarkNoShowResponse,
            lambda session: booking.mark_no_show(session, principal, visit_id, grace),
        )
        self.deps.outbox_committed()
        return response

    # --- the visit's life --------------------------------------------------------------

    async def GetVisit(self, request: P.GetVisitRequest, context: Context) -> P.GetVisitResponse:
        principal = current_principal()
        visit_id = requests.required("visit_id", request.visit_id)

        async def read() -> P.GetVisitResponse:
            async with self.db.read() as session:
                row = await visits.get(session, principal, visit_id)
                shown = await convert.visit(
                    session, row, check_in_window=self.check_in_window, cipher=self.cipher
                )
                return P.GetVisitResponse(visit=shown)

        return await self._about_visit(read())

    async def ListVisits(
        self, request: P.ListVisitsRequest, context: Context
    ) -> P.ListVisitsResponse:
        principal = current_principal()
        wanted = requests.visit_query(request)
        try:
            async with self.db.read() as session:
                page = await visits.list_visits(session, principal, wanted)
        except PermissionDenied as refusal:
            if wanted.patient_id:  # someone else's visits asked for by patient id
                await self.access.refused(wanted.patient_id, refusal.reason)
            raise
        response = P.ListVisitsResponse(
            visits=convert.visit_page(
                page, check_in_window=self.check_in_window, cipher=self.cipher
            ),
            next_page_token=page.next_page_token,
        )
        await self.access.log_reads([visit.patient_id for visit in response.visits])
        return response

    async def CheckIn(self, request: P.CheckInRequest, context: Context) -> P.CheckInResponse:
        principal = current_principal()
        wanted = requests.check_in(request)
        return await self._changing_visit(
            "CheckIn",
            request,
            P.CheckInResponse,
            lambda session: visits.check_in(session, principal, wanted, self.check_in_window),
        )

    async def AdmitPatient(
        self, request: P.AdmitPatientRequest, context: Context
    ) -> P.AdmitPatientResponse:
        principal = current_principal()
        visit_id = requests.required("visit_id", request.visit_id)
        return await self._changing_visit(
            "AdmitPatient",
            request,
            P.AdmitPatientResponse,
            lambda session: visits.admit(session, principal, visit_id),
        )

    async def CompleteVisit(
        self, request: P.CompleteVisitRequest, context: Context
    ) -> P.CompleteVisitResponse:
        principal = current_principal()
        wanted = requests.completion(request)
        response = await self._changing_visit(
            "CompleteVisit",
            request,
            P.CompleteVisitResponse,
            lambda session: visits.complete(session, self.cipher, principal, wanted),
            with_codes=True,
        )
        self.deps.outbox_committed()
        visits.record_root_span(response.visit)
        return response

    async def RecordConnectionEvent(
        self, request: P.RecordConnectionEventRequest, context: Context
    ) -> P.RecordConnectionEventResponse:
        require_service("signaling")
        event = requests.connection_event(request)

        async def work(session: AsyncSession) -> P.RecordConnectionEventResponse:
            seconds = await visits.record_connection(session, event)
            return P.RecordConnectionEventResponse(connected_seconds=seconds)

        return await run_idempotent(
            self.db, "RecordConnectionEvent", request, P.RecordConnectionEventResponse, work
        )

    # --- join tokens ---------------------------------------------------------------------

    async def IssueJoinToken(
        self, request: P.IssueJoinTokenRequest, context: Context
    ) -> P.IssueJoinTokenResponse:
        principal = current_principal()
        visit_id = requests.required("visit_id", request.visit_id)
        settings = self.deps.settings
        async with self.db.read() as session:
            issued = await join_tokens.issue(
                session,
                principal,
                visit_id,
                key=self.deps.join_key,
                ttl_seconds=settings.join_token_ttl_seconds,
                window_before=timedelta(minutes=settings.join_window_before_minutes),
                window_after=timedelta(minutes=settings.join_window_after_minutes),
                telehealth_permitted=self.deps.telehealth_permitted,
            )
        return convert.join_token(issued)

    async def GetJoinTokenKeys(
        self, request: P.GetJoinTokenKeysRequest, context: Context
    ) -> P.GetJoinTokenKeysResponse:
        current_principal()  # any authenticated caller
        return P.GetJoinTokenKeysResponse(jwks_json=join_tokens.keys_json(self.deps.join_key))

    # --- care relationships and the access log -------------------------------------------

    async def CheckCareRelationship(
        self, request: P.CheckCareRelationshipRequest, context: Context
    ) -> P.CheckCareRelationshipResponse:
        require_service(*care.ASKING_SERVICES)
        patient_id, clinician_id = requests.care_question(request)
        async with self.db.read() as session:
            found = await care.answer(session, patient_id, clinician_id)
        return P.CheckCareRelationshipResponse(
            patient_exists=found.patient_exists, has_relationship=found.has_relationship
        )

    async def RecordPatientAccess(
        self, request: P.RecordPatientAccessRequest, context: Context
    ) -> P.RecordPatientAccessResponse:
        caller = require_service(*care.ASKING_SERVICES)
        requests.access_report(request, caller.subject)

        async def work(session: AsyncSession) -> P.RecordPatientAccessResponse:
            recorded = await access_log.append(session, request.accesses)
            return P.RecordPatientAccessResponse(recorded_count=recorded)

        return await run_idempotent(
            self.db, "RecordPatientAccess", request, P.RecordPatientAccessResponse, work
        )

    async def ListPatientAccess(
        self, request: P.ListPatientAccessRequest, context: Context
    ) -> P.ListPatientAccessResponse:
        principal = current_principal()
        wanted = requests.access_log_query(request)
        may_read_access_log(principal, wanted.patient_id)
        query = {"method": "ListPatientAccess", "patient_id": wanted.patient_id}
        cursor = decode_token(wanted.page_token, query, {"before": int})
        async with self.db.read() as session:
            rows = await access_log.list_entries(
                session,
                wanted.patient_id,
                cursor["before"] if cursor else None,
                wanted.page_size + 1,
            )
        page, token = page_of(rows, wanted.page_size, lambda row: {"before": row.sequence}, query)
        return P.ListPatientAccessResponse(
            entries=[convert.access_entry(row) for row in page], next_page_token=token
        )

    async def VerifyAccessLog(
        self, request: P.VerifyAccessLogRequest, context: Context
    ) -> P.VerifyAccessLogResponse:
        require_role("admin")
        verdict = await access_log.CHAIN.verify_stored(self.db)
        if not verdict.intact:
            _count_verify_failures(1)
        return P.VerifyAccessLogResponse(**verdict.answer_fields())
