"""SessionService: each RPC validates, authorizes and runs in one transaction; the
domain rules live in the modules it calls."""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Any

import grpc

from svc_session import availability, booking, join_tokens, profiles, visits
from telemesh.idempotency import run_idempotent
from telemesh.session.v1 import session_pb2, session_pb2_grpc

if TYPE_CHECKING:
    from svc_session.app import SessionApp

Context = grpc.aio.ServicerContext[Any, Any]
P = session_pb2


class SessionServicer(session_pb2_grpc.SessionServiceServicer):
    def __init__(self, app: SessionApp) -> None:
        self.app = app
        self.db = app.db
        self.cipher = app.cipher

    # --- people ----------------------------------------------------------------

    async def CreatePatient(
        self, request: P.CreatePatientRequest, context: Context
    ) -> P.CreatePatientResponse:
        return await run_idempotent(
            self.db,
            "CreatePatient",
            request,
            P.CreatePatientResponse,
            lambda s: profiles.create_patient(s, self.cipher, request),
            cipher=self.cipher,
        )

    async def GetPatient(
        self, request: P.GetPatientRequest, context: Context
    ) -> P.GetPatientResponse:
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
        return await run_idempotent(
            self.db, "BookVisit", request, P.BookVisitResponse, lambda s: booking.book(s, request)
        )

    async def CancelVisit(
        self, request: P.CancelVisitRequest, context: Context
    ) -> P.CancelVisitResponse:
        response = await run_idempotent(
            self.db,
            "CancelVisit",
            request,
            P.CancelVisitResponse,
            lambda s: booking.cancel(s, request),
        )
        self.app.outbox_committed()
        return response

    async def RescheduleVisit(
        self, request: P.RescheduleVisitRequest, context: Context
    ) -> P.RescheduleVisitResponse:
        return await run_idempotent(
            self.db,
            "RescheduleVisit",
            request,
            P.RescheduleVisitResponse,
            lambda s: booking.reschedule(s, request),
        )

    async def MarkNoShow(
        self, request: P.MarkNoShowRequest, context: Context
    ) -> P.MarkNoShowResponse:
        grace = timedelta(minutes=self.app.session_settings.no_show_grace_minutes)
        response = await run_idempotent(
            self.db,
            "MarkNoShow",
            request,
            P.MarkNoShowResponse,
            lambda s: booking.mark_no_show(s, request, grace),
        )
        self.app.outbox_committed()
        return response

    # --- the visit's life --------------------------------------------------------------

    async def GetVisit(self, request: P.GetVisitRequest, context: Context) -> P.GetVisitResponse:
        async with self.db.read() as session:
            return await visits.get(session, self.cipher, request)

    async def ListVisits(
        self, request: P.ListVisitsRequest, context: Context
    ) -> P.ListVisitsResponse:
        async with self.db.read() as session:
            return await visits.list_visits(session, self.cipher, request)

    async def CheckIn(self, request: P.CheckInRequest, context: Context) -> P.CheckInResponse:
        window = timedelta(minutes=self.app.session_settings.join_window_before_minutes)
        return await run_idempotent(
            self.db,
            "CheckIn",
            request,
            P.CheckInResponse,
            lambda s: visits.check_in(s, request, window),
        )

    async def AdmitPatient(
        self, request: P.AdmitPatientRequest, context: Context
    ) -> P.AdmitPatientResponse:
        return await run_idempotent(
            self.db,
            "AdmitPatient",
            request,
            P.AdmitPatientResponse,
            lambda s: visits.admit(s, request),
        )

    async def CompleteVisit(
        self, request: P.CompleteVisitRequest, context: Context
    ) -> P.CompleteVisitResponse:
        response = await run_idempotent(
            self.db,
            "CompleteVisit",
            request,
            P.CompleteVisitResponse,
            lambda s: visits.complete(s, self.cipher, request),
            cipher=self.cipher,  # the answer holds the diagnosis codes
        )
        self.app.outbox_committed()
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
        settings = self.app.session_settings
        async with self.db.read() as session:
            return await join_tokens.issue(
                session,
                request,
                key=self.app.join_key,
                ttl_seconds=settings.join_token_ttl_seconds,
                window_before=timedelta(minutes=settings.join_window_before_minutes),
                window_after=timedelta(minutes=settings.join_window_after_minutes),
                telehealth_permitted=self.app.telehealth_permitted,
            )

    async def GetJoinTokenKeys(
        self, request: P.GetJoinTokenKeysRequest, context: Context
    ) -> P.GetJoinTokenKeysResponse:
        return join_tokens.keys(self.app.join_key)
