"""ConsentService: each RPC authorizes, validates and runs in one transaction; the rules
live in the modules it calls. Changes and checks are audited; refused changes too."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

import grpc
from google.protobuf.message import Message
from sqlmodel.ext.asyncio.session import AsyncSession

from svc_consent import access, audit_store, consent_changes, convert, ledger, refusals, requests
from svc_consent import watch as watch_stream
from svc_consent.models import ConsentVersionRow
from svc_consent.requests import ChangeRequest
from telemesh import metrics
from telemesh.auth import Principal
from telemesh.consent.v1 import consent_pb2, consent_pb2_grpc
from telemesh.errors import NotFound
from telemesh.idempotency import run_idempotent
from telemesh.paging import decode_token, page_of, page_size

if TYPE_CHECKING:
    from svc_consent.access import ConsentAccess
    from svc_consent.change_feed import ChangeFeed
    from svc_consent.check_batcher import CheckBatcher
    from telemesh.db import Database

Context = grpc.aio.ServicerContext[Any, Any]
P = consent_pb2
R = TypeVar("R", bound=Message)
# A checked change, ready to write its new version in the transaction it is given.
Change = Callable[[AsyncSession], Awaitable[ConsentVersionRow]]


def _granting(change: ChangeRequest, state: int, principal: Principal) -> Change:
    """A grant or a rejection, once the caller may change this patient's consents."""
    return lambda session: consent_changes.grant_or_reject(session, change, state, principal)


def _count_verify_failures(amount: int) -> None:
    metrics.count(
        "telemesh.audit.verify_failures",
        "Audit chain verifications that found the chain broken, by chain",
        amount,
        chain="consent_audit",
    )


class ConsentServicer(consent_pb2_grpc.ConsentServiceServicer):
    def __init__(
        self, db: Database, access: ConsentAccess, changes: ChangeFeed, checks: CheckBatcher
    ) -> None:
        self.db = db
        self.access = access
        self.changes = changes
        self.checks = checks
        # At zero from the start, so that the first failure is an increase Prometheus sees.
        _count_verify_failures(0)

    # --- changes -----------------------------------------------------------------

    async def _change(
        self,
        method: str,
        request: Message,
        response_type: type[R],
        prepare: Callable[[Principal], Awaitable[Change]],
        **audited: Any,
    ) -> R:
        """What every change shares: a refusal audited (with `audited`'s fields), a role
        that may change consents, `prepare`'s checks, one idempotent transaction that
        writes the new version, then the watch streams told."""
        async with refusals.audited(self.db, method, **audited):
            change = await prepare(access.may_change_role())

            async def work(session: AsyncSession) -> R:
                row = await change(session)
                return response_type(consent=convert.consent(row))

            response = await run_idempotent(self.db, method, request, response_type, work)
        self.changes.notify()
        return response

    async def GrantConsent(
        self, request: P.GrantConsentRequest, context: Context
    ) -> P.GrantConsentResponse:
        async def prepare(principal: Principal) -> Change:
            change = requests.grant(request, principal)
            await self.access.may_grant(change.key.patient_id, change.key.category)
            return _granting(change, P.CONSENT_STATE_ACTIVE, principal)

        return await self._change(
            "GrantConsent",
            request,
            P.GrantConsentResponse,
            prepare,
            patient_id=request.patient_id,
            category=request.category,
        )

    async def RejectConsent(
        self, request: P.RejectConsentRequest, context: Context
    ) -> P.RejectConsentResponse:
        async def prepare(principal: Principal) -> Change:
            change = requests.reject(request, principal)
            await self.access.may_reject_or_revoke(change.key.patient_id)
            return _granting(change, P.CONSENT_STATE_REJECTED, principal)

        return await self._change(
            "RejectConsent",
            request,
            P.RejectConsentResponse,
            prepare,
            patient_id=request.patient_id,
            category=request.category,
        )

    async def RevokeConsent(
        self, request: P.RevokeConsentRequest, context: Context
    ) -> P.RevokeConsentResponse:
        async def prepare(principal: Principal) -> Change:
            requests.revoke(request)
            async with self.db.read() as session:
                consent = await ledger.get_consent(session, request.consent_id)
            if consent is None:
                raise NotFound("consent", request.consent_id)
            await self.access.may_reject_or_revoke(consent.patient_id)
            # The transaction checks the caller again against the version it locks.
            return lambda session: consent_changes.revoke(
                session, request.consent_id, request.expected_version
            )

        return await self._change(
            "RevokeConsent",
            request,
            P.RevokeConsentResponse,
            prepare,
            consent_id=request.consent_id,
        )

    # --- reads -------------------------------------------------------------------

    async def GetConsent(
        self, request: P.GetConsentRequest, context: Context
    ) -> P.GetConsentResponse:
        requests.consent_id(request.consent_id)
        async with self.db.read() as session:
            row = await ledger.current_version(session, request.consent_id)
        if row is None:
            raise NotFound("consent", request.consent_id)
        await self.access.may_read_consent(row.patient_id, row.category, row.partner_clinic_id)
        return P.GetConsentResponse(consent=convert.consent(row))

    async def ListConsents(
        self, request: P.ListConsentsRequest, context: Context
    ) -> P.ListConsentsResponse:
        requests.patient_filter(request.patient_id, required=True)
        principal = await self.access.may_read_patient(request.patient_id)
        size = page_size(request.page_size)
        partner = principal.subject if principal.role == "partner" else None
        query = {"method": "ListConsents", "patient_id": request.patient_id, "partner": partner}
        cursor = decode_token(request.page_token, query, {"after": str}) or {}
        async with self.db.read() as session:
            rows = await ledger.list_current(
                session, request.patient_id, str(cursor.get("after", "")), size + 1, partner
            )
        page, token = page_of(rows, size, lambda row: {"after": row.consent_id}, query)
        return P.ListConsentsResponse(
            consents=[convert.consent(row) for row in page], next_page_token=token
        )

    async def ListConsentVersions(
        self, request: P.ListConsentVersionsRequest, context: Context
    ) -> P.ListConsentVersionsResponse:
        requests.consent_id(request.consent_id)
        size = page_size(request.page_size)
        query = {"method": "ListConsentVersions", "consent_id": request.consent_id}
        cursor = decode_token(request.page_token, query, {"after": int}) or {}
        async with self.db.read() as session:
            consent = await ledger.get_consent(session, request.consent_id)
        if consent is None:
            raise NotFound("consent", request.consent_id)
        await self.access.may_read_consent(
            consent.patient_id, consent.category, consent.partner_clinic_id
        )
        async with self.db.read() as session:
            rows = await ledger.list_versions(
                session, consent.consent_id, int(cursor.get("after", 0)), size + 1
            )
        page, token = page_of(rows, size, lambda row: {"after": row.version}, query)
        return P.ListConsentVersionsResponse(
            versions=[convert.consent(row) for row in page], next_page_token=token
        )

    # --- checks and the watch ----------------------------------------------------

    async def CheckConsent(
        self, request: P.CheckConsentRequest, context: Context
    ) -> P.CheckConsentResponse:
        # A check that is refused is audited too (a partner probing others' consents).
        async with refusals.audited(
            self.db, "CheckConsent", patient_id=request.patient_id, category=request.category
        ):
            check = requests.check_consent(request)
            principal = await self.access.may_check(
                request.patient_id, request.category, request.partner_clinic_id
            )
        answer = await self.checks.check(check, principal)
        judgement = answer.judgement
        response = P.CheckConsentResponse(
            decision=judgement.decision,
            reason=judgement.reason,
            change_sequence=answer.change_sequence,
        )
        if judgement.version is not None:
            response.consent.CopyFrom(convert.consent(judgement.version))
        return response

    async def WatchConsentChanges(
        self, request: P.WatchConsentChangesRequest, context: Context
    ) -> AsyncIterator[P.WatchConsentChangesResponse]:
        access.may_watch()
        watch = requests.watch(request)
        async for response in watch_stream.stream(self.db, self.changes, watch):
            yield response

    # --- the audit trail ---------------------------------------------------------

    async def ListAuditEntries(
        self, request: P.ListAuditEntriesRequest, context: Context
    ) -> P.ListAuditEntriesResponse:
        requests.patient_filter(request.patient_id, required=False)
        access.may_read_audit(request.patient_id)
        size = page_size(request.page_size)
        query = {"method": "ListAuditEntries", "patient_id": request.patient_id}
        cursor = decode_token(request.page_token, query, {"after": int}) or {}
        async with self.db.read() as session:
            rows = await audit_store.list_entries(
                session, request.patient_id, int(cursor.get("after", 0)), size + 1
            )
        page, token = page_of(rows, size, lambda row: {"after": row.sequence}, query)
        return P.ListAuditEntriesResponse(
            entries=[convert.audit_entry(row) for row in page], next_page_token=token
        )

    async def VerifyAuditTrail(
        self, request: P.VerifyAuditTrailRequest, context: Context
    ) -> P.VerifyAuditTrailResponse:
        access.may_verify()
        verdict = await audit_store.verify_stored_chain(self.db)
        if not verdict.intact:
            _count_verify_failures(1)
        return P.VerifyAuditTrailResponse(**verdict.answer_fields())
