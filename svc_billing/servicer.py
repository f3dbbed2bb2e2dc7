"""BillingService: every RPC checks who calls, validates its input, then works on the
charge store."""

from __future__ import annotations

import logging
import re
from datetime import date
from typing import TYPE_CHECKING, Any, TypeVar

import grpc
from google.protobuf.message import Message

from svc_billing.charges import build_charge
from svc_billing.completion import validate_completion
from svc_billing.fhir_claim import export_claim
from svc_billing.messages import PROTO_TO_STATE, charge_message
from svc_billing.models import BILLED, VOIDED, ChargeEventRow, ChargeRow
from svc_billing.statement import build_statement
from svc_billing.store import ChargeFilter, ChargeStore
from telemesh import metrics
from telemesh.auth import Principal, require_role, require_service
from telemesh.billing.v1 import billing_pb2, billing_pb2_grpc
from telemesh.errors import AlreadyExists
from telemesh.idempotency import run_idempotent
from telemesh.logs import log
from telemesh.paging import page_size
from telemesh.validation import Violations

if TYPE_CHECKING:
    from sqlmodel.ext.asyncio.session import AsyncSession

    from svc_billing.coding import RuleBook
    from svc_billing.fees import FeeSchedule
    from telemesh.care import PatientAccess
    from telemesh.db import Database
    from telemesh.field_crypto import FieldCipher

logger = logging.getLogger("svc_billing")

BILLING_ROLE = "billing"
# A void's reason is a code, never free text (no clinical notes, so no PHI).
VOID_REASON = re.compile(r"^[a-z][a-z0-9-]{1,63}$")
MAX_STATEMENT_DAYS = 366

Context = grpc.aio.ServicerContext[Any, Any]
R = TypeVar("R", bound=Message)


def _readers() -> Principal:
    """Callers who may read charges at all: patients (their own), the billing role and
    administrators (clinicians never: charges are not part of care)."""
    return require_role("patient", BILLING_ROLE, "admin")


class BillingServicer(billing_pb2_grpc.BillingServiceServicer):
    def __init__(
        self,
        db: Database,
        cipher: FieldCipher,
        rules: RuleBook,
        fees: FeeSchedule,
        access: PatientAccess,
    ) -> None:
        self.db = db
        self.cipher = cipher
        self.rules = rules
        self.fees = fees
        self.store = ChargeStore(db, cipher)
        self.access = access

    async def _may_read(self, patient_id: str) -> None:
        """The patient-access gate (telemesh.care), which also writes the access log."""
        await self.access.require(patient_id, staff_roles=(BILLING_ROLE,), clinicians=False)

    async def RecordVisitCompletion(
        self, request: billing_pb2.RecordVisitCompletionRequest, context: Context
    ) -> billing_pb2.RecordVisitCompletionResponse:
        principal = require_service("session")
        completion = validate_completion(request)
        rules = self.rules.for_payer(completion.payer_id)

        def build() -> tuple[ChargeRow, ChargeEventRow]:
            # Coded only when the charge is new: a redelivery finds the recorded one.
            coding = rules.code(completion.facts)
            return build_charge(completion, coding, self.fees, principal, self.cipher)

        record, created = await self.store.record_once(completion.visit_id, build)
        row = record.row
        if record.completion_digest != completion.digest:
            raise AlreadyExists(
                "VISIT_COMPLETION_CONFLICT",
                "this visit's completion was recorded before with different content; the "
                "recorded charge stands (void it to correct it)",
                {"visit_id": row.visit_id, "charge_id": row.charge_id},
            )
        if created:
            metrics.count(
                "telemesh.billing.charges",
                "Charges created, by state and rule set",
                state=row.state,
                rule_set=row.rule_set,
            )
        log(
            logger,
            logging.INFO,
            "charge recorded" if created else "completion redelivered",
            visit_id=row.visit_id,
            charge_id=row.charge_id,
            state=row.state,
            rule_set=row.rule_set,
            procedure_code=row.procedure_code,
        )
        return billing_pb2.RecordVisitCompletionResponse(
            charge=charge_message(record), created=created
        )

    async def GetCharge(
        self, request: billing_pb2.GetChargeRequest, context: Context
    ) -> billing_pb2.GetChargeResponse:
        _readers()
        check = Violations()
        check.uuid("charge_id", request.charge_id)
        check.raise_if_any()
        record = await self.store.get(request.charge_id)
        await self._may_read(record.row.patient_id)
        return billing_pb2.GetChargeResponse(charge=charge_message(record))

    async def ListCharges(
        self, request: billing_pb2.ListChargesRequest, context: Context
    ) -> billing_pb2.ListChargesResponse:
        principal = _readers()
        patient_id = request.patient_id
        if principal.role == "patient":
            patient_id = patient_id or principal.subject
        check = Violations()
        for field, value in (("patient_id", patient_id), ("visit_id", request.visit_id)):
            check.identifier(field, value, required=False)
        states = []
        for index, state in enumerate(request.states):
            if check.check(state in PROTO_TO_STATE, f"states[{index}]", "is not a charge state"):
                states.append(PROTO_TO_STATE[state])
        check.raise_if_any()
        size = page_size(request.page_size)
        if patient_id:
            await self._may_read(patient_id)
        where = ChargeFilter(patient_id, request.visit_id, tuple(sorted(set(states))))
        records, next_token = await self.store.page(where, request.page_token, size)
        if not patient_id:  # billing staff or an admin across patients
            await self.access.log_reads(
                (record.row.patient_id for record in records), f"{principal.role}_staff"
            )
        return billing_pb2.ListChargesResponse(
            charges=[charge_message(record) for record in records], next_page_token=next_token
        )

    async def MarkChargeBilled(
        self, request: billing_pb2.MarkChargeBilledRequest, context: Context
    ) -> billing_pb2.MarkChargeBilledResponse:
        response = await self._transition(
            "MarkChargeBilled", request, billing_pb2.MarkChargeBilledResponse, BILLED
        )
        await self.access.log_reads([response.charge.patient_id], "billing_staff")
        log(logger, logging.INFO, "charge billed", charge_id=request.charge_id)
        return response

    async def VoidCharge(
        self, request: billing_pb2.VoidChargeRequest, context: Context
    ) -> billing_pb2.VoidChargeResponse:
        response = await self._transition(
            "VoidCharge", request, billing_pb2.VoidChargeResponse, VOIDED, request.reason
        )
        await self.access.log_reads([response.charge.patient_id], "billing_staff")
        log(
            logger,
            logging.INFO,
            "charge voided",
            charge_id=request.charge_id,
            reason=request.reason,
        )
        return response

    async def _transition(
        self,
        method: str,
        request: billing_pb2.MarkChargeBilledRequest | billing_pb2.VoidChargeRequest,
        response_type: type[R],
        target: str,
        reason: str | None = None,
    ) -> R:
        """Moves the charge to `target` for the billing role, once per request_id; a
        `reason` (a void's) must be a reason code."""
        principal = require_role(BILLING_ROLE)
        check = Violations()
        check.uuid("request_id", request.request_id)
        check.uuid("charge_id", request.charge_id)
        if reason is not None:
            check.check(
                bool(VOID_REASON.fullmatch(reason)),
                "reason",
                "must be a reason code: 2 to 64 lower-case letters, digits or dashes "
                "(e.g. duplicate, coding-error)",
            )
        check.raise_if_any()

        async def work(session: AsyncSession) -> R:
            record = await self.store.transition(
                session, request.charge_id, target, principal, reason or ""
            )
            return response_type(charge=charge_message(record))

        # The answer's charge holds the diagnosis codes: stored sealed.
        return await run_idempotent(
            self.db, method, request, response_type, work, cipher=self.cipher
        )

    async def GetPatientStatement(
        self, request: billing_pb2.GetPatientStatementRequest, context: Context
    ) -> billing_pb2.GetPatientStatementResponse:
        principal = _readers()
        patient_id = request.patient_id or (
            principal.subject if principal.role == "patient" else ""
        )
        check = Violations()
        check.identifier("patient_id", patient_id)
        start = check.iso_date("start_date", request.start_date)
        end = check.iso_date("end_date", request.end_date)
        if start is not None and end is not None:
            _check_period(check, start, end)
        check.raise_if_any()
        assert start is not None
        assert end is not None
        await self._may_read(patient_id)
        rows = await self.store.for_statement(patient_id, start, end)
        return build_statement(patient_id, start, end, rows, self.fees.currency)

    async def ExportClaim(
        self, request: billing_pb2.ExportClaimRequest, context: Context
    ) -> billing_pb2.ExportClaimResponse:
        _readers()
        check = Violations()
        check.uuid("charge_id", request.charge_id)
        check.raise_if_any()
        row = await self.store.row(request.charge_id)
        await self._may_read(row.patient_id)
        return billing_pb2.ExportClaimResponse(
            claim_json=export_claim(row, self.store.diagnosis_codes(row))
        )


def _check_period(check: Violations, start: date, end: date) -> None:
    if end < start:
        check.add("end_date", "must not be before start_date")
    elif (end - start).days > MAX_STATEMENT_DAYS:
        check.add("end_date", f"must be at most {MAX_STATEMENT_DAYS} days after start_date")
