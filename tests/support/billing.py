"""Building completions and calling BillingService (the billing and security tests)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc

from telemesh.billing.v1 import billing_pb2, billing_pb2_grpc
from telemesh.timestamps import timestamp
from tests.support.harness import Stack

Metadata = tuple[tuple[str, str], ...]


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def completion(**fields: Any) -> billing_pb2.RecordVisitCompletionRequest:
    """A valid completion (established patient, 25 min audio-video at home), with
    `fields` replaced."""
    complete_time = fields.pop("complete_time", datetime.now(UTC) - timedelta(minutes=5))
    stamp = timestamp(complete_time)
    values: dict[str, Any] = {
        "visit_id": new_id("visit"),
        "patient_id": new_id("patient"),
        "clinician_id": "clinician-1",
        "practice_id": "practice-1",
        "complete_time": stamp,
        "service_date": complete_time.date().isoformat(),
        "connected_seconds": 1500,
        "new_patient": False,
        "patient_location": billing_pb2.PATIENT_LOCATION_HOME,
        "audio_only": False,
        "diagnosis_codes": ["J06.9"],
    }
    values.update(fields)
    return billing_pb2.RecordVisitCompletionRequest(**values)


class Billing:
    """A BillingService stub with the test's tokens at hand."""

    def __init__(self, stack: Stack, channel: grpc.aio.Channel) -> None:
        self.stack = stack
        self.stub = billing_pb2_grpc.BillingServiceStub(channel)
        self.session = stack.tokens.service("session")
        self.billing = stack.tokens.role("billing", "biller-1")

    def patient(self, patient_id: str) -> Metadata:
        return self.stack.tokens.patient(patient_id)

    async def record(
        self, request: billing_pb2.RecordVisitCompletionRequest
    ) -> billing_pb2.RecordVisitCompletionResponse:
        return await self.stub.RecordVisitCompletion(request, metadata=self.session, timeout=30)

    async def charges_of_visit(self, visit_id: str) -> list[billing_pb2.Charge]:
        reply = await self.stub.ListCharges(
            billing_pb2.ListChargesRequest(visit_id=visit_id), metadata=self.billing, timeout=30
        )
        return list(reply.charges)
