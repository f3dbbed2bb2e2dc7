"""A charge as a FHIR R4 `Claim` resource, built and validated with fhir.resources.

fhir.resources 8.x has R5 as its default models and ships R4B (4.3.0) and STU3 as
subpackages; plain R4 (4.0.1) models exist only in its 6.x releases, which need
pydantic 1 (this project runs pydantic 2). The `Claim` resource is unchanged between
R4 and R4B (R4B changed only the medication-definition, evidence and subscription
resources), so the R4B model validates exactly the R4 `Claim` structure.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from fhir.resources.R4B.claim import Claim

from svc_billing.models import BILLABLE, BILLED, ChargeRow
from svc_billing.money import to_decimal
from telemesh.errors import FailedPrecondition

CPT = "http://www.ama-assn.org/go/cpt"
ICD10_CM = "http://hl7.org/fhir/sid/icd-10-cm"
PLACE_OF_SERVICE = (
    "https://www.cms.gov/Medicare/Coding/place-of-service-codes/Place_of_Service_Code_Set"
)
CLAIM_TYPE = "http://terminology.hl7.org/CodeSystem/claim-type"
PRIORITY = "http://terminology.hl7.org/CodeSystem/processpriority"
CARE_TEAM_ROLE = "http://terminology.hl7.org/CodeSystem/claimcareteamrole"
# Telemesh's identifier systems: references are logical (by identifier), since the
# people and organizations live in other services, not on a FHIR server.
SYSTEM = "https://telemesh.dev/fhir/sid"


def _coding(system: str, code: str) -> dict[str, Any]:
    return {"coding": [{"system": system, "code": code}]}


def _logical(resource_type: str, kind: str, value: str) -> dict[str, Any]:
    return {"type": resource_type, "identifier": {"system": f"{SYSTEM}/{kind}", "value": value}}


def _money(amount_minor: int, currency: str) -> dict[str, Any]:
    return {"value": to_decimal(amount_minor, currency), "currency": currency}


def claim_resource(row: ChargeRow, diagnosis_codes: Sequence[str]) -> dict[str, Any]:
    """The Claim as a FHIR JSON object (not yet validated); the row's codes come opened
    (the row holds them sealed)."""
    unit_price = row.amount_minor // row.units
    claim: dict[str, Any] = {
        "resourceType": "Claim",
        "id": row.charge_id,
        "identifier": [{"system": f"{SYSTEM}/charge-id", "value": row.charge_id}],
        "status": "active",
        "type": _coding(CLAIM_TYPE, "professional"),
        "use": "claim",
        "patient": _logical("Patient", "patient-id", row.patient_id),
        "billablePeriod": {
            "start": row.service_date.isoformat(),
            "end": row.service_date.isoformat(),
        },
        "created": row.create_time.isoformat(),
        "provider": _logical("Organization", "practice-id", row.practice_id),
        "priority": _coding(PRIORITY, "normal"),
        "careTeam": [
            {
                "sequence": 1,
                "provider": _logical("Practitioner", "clinician-id", row.clinician_id),
                "responsible": True,
                "role": _coding(CARE_TEAM_ROLE, "primary"),
            }
        ],
        "diagnosis": [
            {"sequence": index, "diagnosisCodeableConcept": _coding(ICD10_CM, code)}
            for index, code in enumerate(diagnosis_codes, start=1)
        ],
        # Telemesh keeps no coverage records: the payer, when known, is the insurer.
        "insurance": [
            {
                "sequence": 1,
                "focal": True,
                "coverage": {"display": "coverage on file" if row.payer_id else "self-pay"},
            }
        ],
        "item": [
            {
                "sequence": 1,
                "careTeamSequence": [1],
                "diagnosisSequence": list(row.diagnosis_pointers),
                "productOrService": _coding(CPT, row.procedure_code),
                "modifier": [_coding(CPT, modifier) for modifier in row.modifiers],
                "servicedDate": row.service_date.isoformat(),
                "locationCodeableConcept": _coding(PLACE_OF_SERVICE, row.place_of_service),
                "quantity": {"value": row.units},
                "unitPrice": _money(unit_price, row.currency),
                "net": _money(row.amount_minor, row.currency),
            }
        ],
        "total": _money(row.amount_minor, row.currency),
    }
    if row.payer_id:
        claim["insurer"] = _logical("Organization", "payer-id", row.payer_id)
    if not row.modifiers:
        del claim["item"][0]["modifier"]
    return claim


def export_claim(row: ChargeRow, diagnosis_codes: Sequence[str]) -> str:
    """The charge's Claim as JSON, validated by the FHIR models first."""
    if row.state not in (BILLABLE, BILLED):
        raise FailedPrecondition(
            "CHARGE_NOT_CLAIMABLE",
            f"only billable or billed charges are claimed; this one is {row.state}",
            {"state": row.state},
        )
    claim: str = Claim.model_validate(claim_resource(row, diagnosis_codes)).model_dump_json()
    return claim
