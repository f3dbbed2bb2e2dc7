"""Who may touch a visit or a patient's record in the session service. Missing rights are
PERMISSION_DENIED.

A visit is its participants': the patient and the clinician (admins and the reading
services by the rules of each call). A patient's profile and bookings go through the
runtime's patient-access gate (telemesh.care): the patient, an admin, or a clinician
with a care relationship, decided here from this service's own visits (`care`).
"""

from __future__ import annotations

from svc_session.models import VisitRow
from telemesh.auth import Principal
from telemesh.errors import PermissionDenied

# Services that read visits: signaling checks a room's visit.
READER_SERVICES = frozenset({"signaling"})


def role_in(visit: VisitRow, principal: Principal) -> str | None:
    """ "patient" or "clinician" when the caller takes part in the visit."""
    if principal.is_user("patient", visit.patient_id):
        return "patient"
    if principal.is_user("clinician", visit.clinician_id):
        return "clinician"
    return None


class NotParticipant(PermissionDenied):
    """A refusal about one visit; names the visit's patient for the access log."""

    def __init__(self, visit: VisitRow, message: str) -> None:
        super().__init__("NOT_PARTICIPANT", message)
        self.patient_id = visit.patient_id


def require_participant(visit: VisitRow, principal: Principal, *roles: str) -> str:
    """The caller's role in the visit; they must hold one of `roles` (any when empty)."""
    role = role_in(visit, principal)
    if role is None or (roles and role not in roles):
        wanted = " or ".join(roles) if roles else "participant"
        raise NotParticipant(visit, f"only the visit's {wanted} may do this")
    return role


def may_manage(visit: VisitRow, principal: Principal) -> None:
    """Cancel or reschedule: an admin, or either participant."""
    if principal.role != "admin":
        require_participant(visit, principal)


def may_read(visit: VisitRow, principal: Principal) -> None:
    """A visit is read by its participants, admins and the services that read visits."""
    if not (
        role_in(visit, principal)
        or principal.role == "admin"
        or (principal.is_service and principal.subject in READER_SERVICES)
    ):
        raise NotParticipant(visit, "only the visit's participants may read it")


def may_book(principal: Principal, clinician_id: str) -> None:
    """Past the patient-access gate, a clinician books only into their own schedule."""
    if principal.role == "clinician" and principal.subject != clinician_id:
        raise PermissionDenied(
            "NOT_YOUR_SCHEDULE", "a clinician books only into their own schedule"
        )


def listing_scope(principal: Principal, patient_id: str, clinician_id: str) -> tuple[str, str]:
    """Whose visits a listing covers: a patient's own, a clinician's own, an admin's pick."""
    if principal.role == "patient":
        patient_id = patient_id or principal.subject
        if patient_id != principal.subject:
            raise PermissionDenied("NOT_YOURS", "a patient lists only their own visits")
    elif principal.role == "clinician":
        clinician_id = clinician_id or principal.subject
        if clinician_id != principal.subject:
            raise PermissionDenied("NOT_YOURS", "a clinician lists only their own visits")
    elif principal.role != "admin":
        raise PermissionDenied(
            "ROLE_NOT_ALLOWED", "only patients, clinicians and admins list visits"
        )
    return patient_id, clinician_id


def sees_clinician_phi(principal: Principal, clinician_id: str) -> bool:
    """A clinician's contact details are theirs and admins'; others see the practice."""
    return principal.is_user("clinician", clinician_id) or principal.role == "admin"


def may_read_access_log(principal: Principal, patient_id: str) -> None:
    if not (principal.is_user("patient", patient_id) or principal.role == "admin"):
        raise PermissionDenied(
            "NOT_YOUR_LOG", "a patient lists only their own access log; admins any"
        )
