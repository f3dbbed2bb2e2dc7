"""Who may reach a patient's record: one decision, asked the same way by every service.

- A patient reaches their own record.
- A clinician reaches a patient only through a care relationship: a visit with that
  patient, past or upcoming, that was not cancelled. The session service owns visits, so
  it alone decides (`CheckCareRelationship`); the other services ask it through
  `RemoteCareSource`, the session service reads its own tables (`svc_session.care`).
- An administrator reaches every record; every access is logged all the same.
- Each call names the other callers it serves: staff roles (billing staff for charges)
  and services (the checking services for consents).

Every decision, allowed or refused, goes to the HIPAA access log through the service's
`AccessRecorder` (who, which patient, which call, when, the basis or the refusal reason).
The session service unreachable means no access: `Unavailable`, fail closed.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

import grpc

from telemesh.auth import Principal, current_principal
from telemesh.clients import ServiceClients
from telemesh.errors import PermissionDenied, from_rpc_error
from telemesh.session.v1 import session_pb2, session_pb2_grpc


@dataclass(frozen=True)
class CareAnswer:
    patient_exists: bool
    has_relationship: bool


class CareSource(Protocol):
    """Answers whether a patient exists and whether a clinician has a care relationship
    with them (`clinician_id` empty: only the first)."""

    async def lookup(self, patient_id: str, clinician_id: str) -> CareAnswer: ...


class AccessRecorder(Protocol):
    """Appends one access decision to the HIPAA access log."""

    async def record(
        self, principal: Principal, patient_id: str, *, allowed: bool, basis: str
    ) -> None: ...


class RemoteCareSource:
    """Asks the session service. A relationship, once seen, is trusted for `cache_seconds`
    (it ends only when its visits are cancelled); an absent one is asked again each time,
    so a first booking is seen at once."""

    def __init__(
        self, clients: ServiceClients, *, cache_seconds: float = 10.0, timeout_seconds: float = 2.0
    ) -> None:
        self._stub = session_pb2_grpc.SessionServiceStub(clients.channel("session"))
        self._cache_seconds = cache_seconds
        self._timeout = timeout_seconds
        self._known: dict[tuple[str, str], float] = {}  # -> monotonic expiry

    async def lookup(self, patient_id: str, clinician_id: str) -> CareAnswer:
        key = (patient_id, clinician_id)
        expiry = self._known.get(key)
        if expiry is not None and expiry > time.monotonic():
            return CareAnswer(patient_exists=True, has_relationship=bool(clinician_id))
        try:
            response = await self._stub.CheckCareRelationship(
                session_pb2.CheckCareRelationshipRequest(
                    patient_id=patient_id, clinician_id=clinician_id
                ),
                timeout=self._timeout,
            )
        except grpc.aio.AioRpcError as error:
            raise from_rpc_error(error, "session") from None
        answer = CareAnswer(response.patient_exists, response.has_relationship)
        if answer.patient_exists and (answer.has_relationship or not clinician_id):
            if len(self._known) > 50_000:
                self._known.clear()
            self._known[key] = time.monotonic() + self._cache_seconds
        return answer


def allowed_basis(principal: Principal, patient_id: str) -> str:
    """The basis to log for an access a service rule allowed, without asking anyone:
    the patient themself, an admin, a clinician taking part in the visit, or staff."""
    if principal.is_user("patient", patient_id):
        return "self"
    if principal.role == "admin":
        return "admin"
    if principal.role == "clinician":
        return "visit_participant"
    return f"{principal.role}_staff"


def _refusal_reason(principal: Principal) -> str:
    """The ErrorInfo reason of a refusal, in the words the other rules already use."""
    if principal.role == "clinician":
        return "NO_CARE_RELATIONSHIP"
    if principal.role == "patient":
        return "NOT_OWNER"
    if principal.is_service:
        return "SERVICE_NOT_ALLOWED"
    return "ROLE_NOT_ALLOWED"


class PatientAccess:
    """The gate every service puts in front of a patient's record."""

    def __init__(self, source: CareSource, recorder: AccessRecorder) -> None:
        self.source = source
        self.recorder = recorder

    async def basis(
        self,
        principal: Principal,
        patient_id: str,
        *,
        staff_roles: Iterable[str] = (),
        services: Iterable[str] = (),
        clinicians: bool = True,
    ) -> str | None:
        """Why `principal` may reach `patient_id`'s record, or None when they may not."""
        if principal.is_user("patient", patient_id):
            return "self"
        if principal.role == "admin":
            return "admin"
        if principal.role in staff_roles:
            return f"{principal.role}_staff"
        if principal.is_service:
            return "service" if principal.subject in services else None
        if principal.role == "clinician" and clinicians:
            answer = await self.source.lookup(patient_id, principal.subject)
            return "care_relationship" if answer.has_relationship else None
        return None

    async def require(
        self,
        patient_id: str,
        *,
        staff_roles: Iterable[str] = (),
        services: Iterable[str] = (),
        clinicians: bool = True,
    ) -> Principal:
        """The caller, who must reach `patient_id`'s record; logs the decision either way.
        `clinicians=False` keeps clinicians out even with a care relationship."""
        principal = current_principal()
        basis = await self.basis(
            principal, patient_id, staff_roles=staff_roles, services=services, clinicians=clinicians
        )
        if basis is None:
            reason = _refusal_reason(principal)
            await self.recorder.record(principal, patient_id, allowed=False, basis=reason)
            raise PermissionDenied(reason, "the caller may not reach this patient's record")
        await self.recorder.record(principal, patient_id, allowed=True, basis=basis)
        return principal

    async def refused(self, patient_id: str, reason: str) -> None:
        """Logs a refusal decided elsewhere (a rule of the service itself)."""
        await self.recorder.record(current_principal(), patient_id, allowed=False, basis=reason)

    async def log_reads(self, patient_ids: Iterable[str], basis: str | None = None) -> None:
        """Logs accesses that another rule of the service already allowed (a visit's
        participants, a list across patients), with `basis` or the caller's standing
        (`allowed_basis`). Recorded together: the recorder commits them as one group."""
        principal = current_principal()
        await asyncio.gather(
            *(
                self.recorder.record(
                    principal,
                    patient_id,
                    allowed=True,
                    basis=basis or allowed_basis(principal, patient_id),
                )
                for patient_id in dict.fromkeys(patient_ids)
            )
        )

    async def patient_exists(self, patient_id: str) -> bool:
        return (await self.source.lookup(patient_id, "")).patient_exists
