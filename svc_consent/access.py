"""Who may do what with consents. Missing rights are PERMISSION_DENIED.

Consents are the patient's own:
- only the patient grants, rejects and revokes them (in the app), and only the patient
  grants PARTNER_SHARING;
- a clinician with a care relationship may record the patient's verbal grant of
  telehealth or recording consent during a visit (capture method VERBAL, `captured_by`
  the clinician); never a sharing consent, a rejection or a revocation;
- no consent is recorded for a patient who does not exist (NOT_FOUND).

Reading: the patient, a clinician with a care relationship, an administrator, and the
checking services (session, signaling); a partner clinic (role `partner`, subject =
clinic id) reads and checks only the sharing consents that name it. Checks: clinicians
with a care relationship, the checking services, partners. Only the checking services
and administrators watch changes; administrators read and verify the audit trail, a
patient reads their own entries.

Every decision about a patient's consents goes through the runtime's patient-access gate
(telemesh.care), which asks the session service about care relationships and writes the
HIPAA access log.
"""

from __future__ import annotations

from telemesh.auth import Principal, current_principal, require_role
from telemesh.care import PatientAccess
from telemesh.consent.v1 import consent_pb2
from telemesh.errors import NotFound, PermissionDenied

CHECKING_SERVICES = ("session", "signaling")
# What a clinician may record as the patient's verbal grant.
VERBAL_CATEGORIES = frozenset(
    {consent_pb2.CONSENT_CATEGORY_TELEHEALTH, consent_pb2.CONSENT_CATEGORY_RECORDING}
)


def _is_checking_service(principal: Principal) -> bool:
    return principal.is_service and principal.subject in CHECKING_SERVICES


def may_change_role() -> Principal:
    """A patient or a clinician: who may change consents at all (before the patient is
    known; `ConsentAccess` then checks whose)."""
    return require_role("patient", "clinician")


def require_patient_self(patient_id: str) -> Principal:
    """Only the patient: rejections and revocations (checked again in the transaction)."""
    principal = current_principal()
    if not principal.is_user("patient", patient_id):
        raise PermissionDenied("PATIENT_ONLY", "only the patient rejects or revokes a consent")
    return principal


def _partner_owns(principal: Principal, category: int, partner_clinic_id: str) -> bool:
    return (
        category == consent_pb2.CONSENT_CATEGORY_PARTNER_SHARING
        and partner_clinic_id == principal.subject
    )


class ConsentAccess:
    """The consent rules on top of the patient-access gate."""

    def __init__(self, gate: PatientAccess) -> None:
        self.gate = gate

    async def _refuse(self, patient_id: str, reason: str, message: str) -> PermissionDenied:
        await self.gate.refused(patient_id, reason)
        return PermissionDenied(reason, message)

    async def _require_patient(self, patient_id: str) -> None:
        if not await self.gate.patient_exists(patient_id):
            raise NotFound("patient", patient_id)

    async def may_grant(self, patient_id: str, category: int) -> Principal:
        """The patient; or a clinician with a care relationship recording a verbal
        telehealth or recording grant. The patient must exist."""
        principal = may_change_role()
        if principal.role == "clinician" and category not in VERBAL_CATEGORIES:
            raise await self._refuse(
                patient_id,
                "PATIENT_ONLY",
                "only the patient grants a sharing consent; a clinician records only a "
                "verbal telehealth or recording grant",
            )
        await self.gate.require(patient_id)
        await self._require_patient(patient_id)
        return principal

    async def may_reject_or_revoke(self, patient_id: str) -> Principal:
        principal = may_change_role()
        if principal.role == "patient" and principal.subject != patient_id:
            raise await self._refuse(
                patient_id, "NOT_OWNER", "a patient rejects or revokes only their own consents"
            )
        if not principal.is_user("patient", patient_id):
            raise await self._refuse(
                patient_id, "PATIENT_ONLY", "only the patient rejects or revokes a consent"
            )
        await self.gate.require(patient_id)
        await self._require_patient(patient_id)
        return principal

    async def _partner(self, principal: Principal, patient_id: str, owns: bool) -> Principal:
        if not owns:
            raise await self._refuse(
                patient_id,
                "PARTNER_SCOPE",
                "a partner clinic may only read and check sharing consents that name it",
            )
        await self.gate.log_reads([patient_id], "partner_sharing")
        return principal

    async def may_read_patient(self, patient_id: str) -> Principal:
        """May list a patient's consents (a partner: only its own sharing ones, which the
        listing filters to)."""
        principal = current_principal()
        if principal.role == "partner":
            return await self._partner(principal, patient_id, owns=True)
        return await self.gate.require(patient_id, services=CHECKING_SERVICES)

    async def may_read_consent(
        self, patient_id: str, category: int, partner_clinic_id: str
    ) -> Principal:
        principal = current_principal()
        if principal.role == "partner":
            owns = _partner_owns(principal, category, partner_clinic_id)
            return await self._partner(principal, patient_id, owns)
        return await self.gate.require(patient_id, services=CHECKING_SERVICES)

    async def may_check(self, patient_id: str, category: int, partner_clinic_id: str) -> Principal:
        principal = current_principal()
        if _is_checking_service(principal):
            return principal
        if principal.role == "partner":
            owns = _partner_owns(principal, category, partner_clinic_id)
            return await self._partner(principal, patient_id, owns)
        if principal.role == "clinician":
            return await self.gate.require(patient_id)
        raise PermissionDenied(
            "ROLE_NOT_ALLOWED", f"role {principal.role!r} may not check consents"
        )


def may_watch() -> Principal:
    principal = current_principal()
    if principal.role == "admin" or _is_checking_service(principal):
        return principal
    raise PermissionDenied(
        "SERVICE_NOT_ALLOWED", "only the session and signaling services may watch consents"
    )


def may_read_audit(patient_id: str) -> Principal:
    """Administrators read every entry; a patient the entries about themselves."""
    principal = current_principal()
    if principal.role == "admin" or (patient_id and principal.is_user("patient", patient_id)):
        return principal
    raise PermissionDenied("ROLE_NOT_ALLOWED", "the caller may not read these audit entries")


def may_verify() -> Principal:
    return require_role("admin")
