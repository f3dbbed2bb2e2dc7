"""A new charge from a validated completion, its coding and the fee schedule."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from svc_billing.coding import Coding
from svc_billing.completion import Completion
from svc_billing.fees import FeeSchedule
from svc_billing.models import BILLABLE, NOT_BILLABLE, ChargeEventRow, ChargeRow
from svc_billing.sealed import seal_codes, seal_digest
from telemesh.auth import Principal
from telemesh.field_crypto import FieldCipher

# A claim line points at up to four of the claim's diagnoses (as on the CMS-1500 form).
MAX_POINTERS = 4


def build_charge(
    completion: Completion,
    coding: Coding,
    fees: FeeSchedule,
    actor: Principal,
    cipher: FieldCipher,
) -> tuple[ChargeRow, ChargeEventRow]:
    """The charge row (its PHI sealed with `cipher`) and its first history row."""
    now = datetime.now(UTC)
    state = BILLABLE if coding.billable else NOT_BILLABLE
    amount = fees.price(coding.procedure_code, coding.units) if coding.billable else 0
    pointers = list(range(1, min(len(completion.diagnosis_codes), MAX_POINTERS) + 1))
    charge_id = str(uuid.uuid4())
    row = ChargeRow(
        charge_id=charge_id,
        visit_id=completion.visit_id,
        patient_id=completion.patient_id,
        clinician_id=completion.clinician_id,
        practice_id=completion.practice_id,
        payer_id=completion.payer_id,
        complete_time=completion.complete_time,
        service_date=completion.service_date,
        connected_seconds=completion.facts.connected_seconds,
        new_patient=completion.facts.new_patient,
        at_home=completion.facts.at_home,
        audio_only=completion.facts.audio_only,
        completion_digest=seal_digest(cipher, charge_id, completion.digest),
        rule_set=coding.rule_set,
        procedure_code=coding.procedure_code,
        modifiers=list(coding.modifiers),
        place_of_service=coding.place_of_service,
        units=coding.units,
        amount_minor=amount,
        currency=fees.currency,
        fee_schedule=fees.label,
        diagnosis_codes_enc=seal_codes(cipher, charge_id, completion.diagnosis_codes),
        diagnosis_pointers=pointers if coding.billable else [],
        not_billable_reason=coding.not_billable_reason,
        not_billable_code=coding.not_billable_code,
        minimum_seconds=coding.minimum_seconds,
        create_time=now,
        state=state,
        update_time=now,
        revision=1,
    )
    event = ChargeEventRow(
        charge_id=charge_id,
        sequence=1,
        from_state="",
        to_state=state,
        actor_role=actor.role,
        actor_id=actor.subject,
        event_time=now,
    )
    return row, event
