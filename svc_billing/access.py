"""Who may do what with charges. Missing rights are PERMISSION_DENIED.

The session service records completions. A charge is the patient's record: the patient
reads their own; billing staff (role `billing`) and administrators read every patient's;
clinicians never (charges are not part of care). Only billing staff mark charges billed
or void them. Every read of one patient's charges goes through the runtime's
patient-access gate (telemesh.care), which also writes the HIPAA access log.
"""

from __future__ import annotations

from collections.abc import Iterable

from telemesh.auth import Principal, require_role, require_service
from telemesh.care import PatientAccess

BILLING_ROLE = "billing"


def may_record_completion() -> Principal:
    return require_service("session")


def may_change_charges() -> Principal:
    return require_role(BILLING_ROLE)


def readers() -> Principal:
    """Callers who may read charges at all (whose, `ChargeAccess.may_read` decides)."""
    return require_role("patient", BILLING_ROLE, "admin")


class ChargeAccess:
    """The charge rules on top of the patient-access gate."""

    def __init__(self, gate: PatientAccess) -> None:
        self.gate = gate

    async def may_read(self, patient_id: str) -> None:
        await self.gate.require(patient_id, staff_roles=(BILLING_ROLE,), clinicians=False)

    async def read_across_patients(self, patient_ids: Iterable[str]) -> None:
        """Logs what staff or an admin read in a listing across patients."""
        await self.gate.log_reads(patient_ids)

    async def changed(self, patient_id: str) -> None:
        """Logs a charge of the patient marked billed or voided (billing staff)."""
        await self.gate.log_reads([patient_id])
