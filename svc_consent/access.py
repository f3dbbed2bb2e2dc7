"""Who may do what with consents. Missing rights are PERMISSION_DENIED.

- A patient grants, rejects and revokes only their own consents (in the app); a
  clinician records a patient's verbal grant, rejection or revocation.
- Clinicians and the session and signaling services check; a partner clinic (role
  `partner`, subject = clinic id) checks only sharing consents that name that clinic.
- Records are read by their patient, clinicians, administrators and the checking
  services; a partner reads only the sharing consents that name it.
- Only the session and signaling services, and administrators, watch changes.
- Administrators read and verify the audit trail; a patient reads their own entries.
"""

from __future__ import annotations

from telemesh.auth import Principal, current_principal, require_role, require_self_or
from telemesh.consent.v1 import consent_pb2
from telemesh.errors import PermissionDenied

CHECKING_SERVICES = ("session", "signaling")


def _is_checking_service(principal: Principal) -> bool:
    return principal.is_service and principal.subject in CHECKING_SERVICES


def may_change_role() -> Principal:
    """A patient or a clinician: who may change consents at all (before the patient is
    known; `may_change` then checks whose)."""
    return require_role("patient", "clinician")


def may_change(patient_id: str) -> Principal:
    """A patient acting for themselves, or a clinician recording verbal consent (after
    `may_change_role`)."""
    return require_self_or("patient", patient_id, "clinician")


def may_check(category: int, partner_clinic_id: str) -> Principal:
    principal = current_principal()
    if principal.role == "clinician" or _is_checking_service(principal):
        return principal
    if principal.role == "partner":
        _partner_owns(principal, category, partner_clinic_id)
        return principal
    raise PermissionDenied("ROLE_NOT_ALLOWED", f"role {principal.role!r} may not check consents")


def _partner_owns(principal: Principal, category: int, partner_clinic_id: str) -> None:
    if (
        category != consent_pb2.CONSENT_CATEGORY_PARTNER_SHARING
        or partner_clinic_id != principal.subject
    ):
        raise PermissionDenied(
            "PARTNER_SCOPE",
            "a partner clinic may only check sharing consents that name that clinic",
        )


def may_read_patient(patient_id: str) -> Principal:
    """May read a patient's consents (a partner: only its own sharing ones)."""
    principal = current_principal()
    if (
        principal.is_user("patient", patient_id)
        or principal.role in ("clinician", "admin", "partner")
        or _is_checking_service(principal)
    ):
        return principal
    raise PermissionDenied("NOT_OWNER", "the caller may not read this patient's consents")


def may_read_consent(patient_id: str, category: int, partner_clinic_id: str) -> Principal:
    principal = may_read_patient(patient_id)
    if principal.role == "partner":
        _partner_owns(principal, category, partner_clinic_id)
    return principal


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
