"""Charges as protobuf messages."""

from __future__ import annotations

from svc_billing.coding import AUDIO_ONLY_DISCUSSION_TOO_SHORT, BELOW_MINIMUM_TIME
from svc_billing.models import BILLABLE, BILLED, NOT_BILLABLE, VOIDED, ChargeEventRow
from svc_billing.store import ChargeRecord
from telemesh.billing.v1 import billing_pb2
from telemesh.timestamps import timestamp

STATE_TO_PROTO = {
    BILLABLE: billing_pb2.CHARGE_STATE_BILLABLE,
    BILLED: billing_pb2.CHARGE_STATE_BILLED,
    VOIDED: billing_pb2.CHARGE_STATE_VOIDED,
    NOT_BILLABLE: billing_pb2.CHARGE_STATE_NOT_BILLABLE,
}
PROTO_TO_STATE = {value: key for key, value in STATE_TO_PROTO.items()}

# Why not billable: the coding rules' names and the API's codes.
NOT_BILLABLE_CODES = {
    BELOW_MINIMUM_TIME: billing_pb2.NOT_BILLABLE_CODE_BELOW_MINIMUM_TIME,
    AUDIO_ONLY_DISCUSSION_TOO_SHORT: billing_pb2.NOT_BILLABLE_CODE_AUDIO_ONLY_DISCUSSION_TOO_SHORT,
}


def money(amount_minor: int, currency: str) -> billing_pb2.Money:
    return billing_pb2.Money(currency_code=currency, amount_minor=amount_minor)


def transition_message(event: ChargeEventRow) -> billing_pb2.ChargeTransition:
    return billing_pb2.ChargeTransition(
        from_state=STATE_TO_PROTO.get(event.from_state, billing_pb2.CHARGE_STATE_UNSPECIFIED),
        to_state=STATE_TO_PROTO[event.to_state],
        transition_time=timestamp(event.event_time),
        actor_id=event.actor_id,
        actor_role=event.actor_role,
        reason=event.reason,
    )


def charge_message(record: ChargeRecord) -> billing_pb2.Charge:
    row = record.row
    return billing_pb2.Charge(
        charge_id=row.charge_id,
        visit_id=row.visit_id,
        patient_id=row.patient_id,
        clinician_id=row.clinician_id,
        practice_id=row.practice_id,
        payer_id=row.payer_id,
        state=STATE_TO_PROTO[row.state],
        rule_set=row.rule_set,
        procedure_code=row.procedure_code,
        modifiers=row.modifiers,
        place_of_service=row.place_of_service,
        service_date=row.service_date.isoformat(),
        units=row.units,
        amount=money(row.amount_minor, row.currency),
        fee_schedule=row.fee_schedule,
        diagnosis_codes=record.diagnosis_codes,
        diagnosis_pointers=row.diagnosis_pointers,
        connected_seconds=row.connected_seconds,
        new_patient=row.new_patient,
        audio_only=row.audio_only,
        patient_location=(
            billing_pb2.PATIENT_LOCATION_HOME if row.at_home else billing_pb2.PATIENT_LOCATION_OTHER
        ),
        not_billable_reason=row.not_billable_reason,
        not_billable_code=NOT_BILLABLE_CODES.get(
            row.not_billable_code, billing_pb2.NOT_BILLABLE_CODE_UNSPECIFIED
        ),
        minimum_seconds=row.minimum_seconds,
        void_reason=row.void_reason,
        create_time=timestamp(row.create_time),
        update_time=timestamp(row.update_time),
        history=[transition_message(event) for event in record.history],
    )
