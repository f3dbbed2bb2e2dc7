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
