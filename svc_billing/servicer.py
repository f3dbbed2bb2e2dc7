"""BillingService, thin: each RPC asks `access` who may call, `requests` whether the input
holds, then the domain (completion, coding, charges, statement, fhir_claim) and the
`store`, and answers through `convert`: the consent service's shape."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeVar

import grpc
from google.protobuf.message import Message

from svc_billing import access, requests
from svc_billing.access import ChargeAccess
from svc_billing.charges import build_charge
from svc_billing.completion import validate_completion
from svc_billing.convert import charge_message
from svc_billing.fhir_claim import export_claim
from svc_billing.models import BILLED, VOIDED, ChargeEventRow, ChargeRow
from svc_billing.statement import build_statement
from svc_billing.store import ChargeStore
from telemesh import metrics
from telemesh.billing.v1 import billing_pb2, billing_pb2_grpc
from telemesh.errors import AlreadyExists
from telemesh.idempotency import run_idempotent
from telemesh.logs import log
from telemesh.paging import page_size

if TYPE_CHECKING:
    from sqlmodel.ext.asyncio.session import AsyncSession

    from svc_billing.coding import RuleBook
    from svc_billing.fees import FeeSchedule
    from telemesh.db import Database
    from telemesh.field_crypto import FieldCipher

logger = logging.getLogger("svc_billing")


Context = grpc.aio.ServicerContext[Any, Any]
R = TypeVar("R", bound=Message)


class BillingServicer(billing_pb2_grpc.BillingServiceServicer):
    """Decodes, asks access and requests, calls the domain and the store, encodes."""

    def __init__(
        self,
        db: Database,
        cipher: FieldCipher,
        rules: RuleBook,
        fees: FeeSchedule,
        access: ChargeAccess,
    ) -> None:
        self.db = db
        self.cipher = cipher
        self.rules = rules
        self.fees = fees
        self.store = ChargeStore(db, cipher)
        self.access = access

    async def RecordVisitCompletion(
        self, request: billing_pb2.RecordVisitCompletionRequest, context: Context
    ) -> billing_pb2.RecordVisitCompletionResponse:
        principal = access.may_record_completion()
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
            metrics.observe(
                "telemesh.billing.charge_delay",
                "min",
                "From the visit's completion to its charge (docs/slo.md)",
                (datetime.now(UTC) - completion.complete_time).total_seconds() / 60,
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
        access.readers()
        requests.charge_id(request.charge_id)
        record = await self.store.get(request.charge_id)
        await self.access.may_read(record.row.patient_id)
        return billing_pb2.GetChargeResponse(charge=charge_message(record))

    async def ListCharges(
        self, request: billing_pb2.ListChargesRequest, context: Context
    ) -> billing_pb2.ListChargesResponse:
        principal = access.readers()
        where = requests.charge_filter(request, principal)
        size = page_size(request.page_size)
        if where.patient_id:
            await self.access.may_read(where.patient_id)
        records, next_token = await self.store.page(where, request.page_token, size)
        if not where.patient_id:  # billing staff or an admin across patients
            await self.access.read_across_patients(record.row.patient_id for record in records)
        return billing_pb2.ListChargesResponse(
            charges=[charge_message(record) for record in records], next_page_token=next_token
        )

    async def MarkChargeBilled(
        self, request: billing_pb2.MarkChargeBilledRequest, context: Context
    ) -> billing_pb2.MarkChargeBilledResponse:
        response = await self._transition(
            "MarkChargeBilled", request, billing_pb2.MarkChargeBilledResponse, BILLED
        )
        await self.access.changed(response.charge.patient_id)
        log(logger, logging.INFO, "charge billed", charge_id=request.charge_id)
        return response

    async def VoidCharge(
        self, request: billing_pb2.VoidChargeRequest, context: Context
    ) -> billing_pb2.VoidChargeResponse:
        response = await self._transition(
            "VoidCharge", request, billing_pb2.VoidChargeResponse, VOIDED, request.reason
        )
        await self.access.changed(response.charge.patient_id)
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
        """Moves the charge to `target` for the billing role, once per request_id."""
        principal = access.may_change_charges()
        requests.transition(request, reason)

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
        principal = access.readers()
        period = requests.statement(request, principal)
        await self.access.may_read(period.patient_id)
        rows = await self.store.for_statement(period.patient_id, period.start, period.end)
        return build_statement(
            period.patient_id, period.start, period.end, rows, self.fees.currency
        )

    async def ExportClaim(
        self, request: billing_pb2.ExportClaimRequest, context: Context
    ) -> billing_pb2.ExportClaimResponse:
        access.readers()
        requests.charge_id(request.charge_id)
        row = await self.store.row(request.charge_id)
        await self.access.may_read(row.patient_id)
        return billing_pb2.ExportClaimResponse(
            claim_json=export_claim(row, self.store.diagnosis_codes(row))
        )
