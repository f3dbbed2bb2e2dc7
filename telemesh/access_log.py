"""The HIPAA access log (45 CFR 164.312(b)) from the side of the service that serves an
access: every decision about a patient's record, allowed or refused, becomes a
`PatientAccess` (who, which patient, which call, when, the basis or refusal reason;
never the PHI itself).

The log itself is kept by the session service, hash-chained with the runtime's one
chain implementation (telemesh.hash_chain). Other services send their accesses there
before they answer (`RemoteAccessRecorder`): an allowed access that cannot be logged is
not served (UNAVAILABLE, fail closed); a refusal stands either way. Calls between
services are system work, not a person's access, and are not logged here (the consent
service's own audit trail records every consent check).
"""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime

import grpc

from telemesh.auth import Principal
from telemesh.clients import ServiceClients
from telemesh.errors import from_rpc_error
from telemesh.group_commit import GroupCommit
from telemesh.interceptor import current_method
from telemesh.logs import log
from telemesh.session.v1 import session_pb2, session_pb2_grpc
from telemesh.timestamps import timestamp

logger = logging.getLogger("telemesh.access_log")
# What one RecordPatientAccess may carry (the contract says 500).
MAX_BATCH = 500


def new_access(
    principal: Principal, patient_id: str, *, allowed: bool, basis: str, service: str
) -> session_pb2.PatientAccess:
    return session_pb2.PatientAccess(
        access_id=str(uuid.uuid4()),
        access_time=timestamp(datetime.now(UTC)),
        patient_id=patient_id,
        actor_id=principal.subject,
        actor_role=principal.role,
        service=service,
        method=current_method(),
        outcome=session_pb2.ACCESS_OUTCOME_ALLOWED
        if allowed
        else session_pb2.ACCESS_OUTCOME_REFUSED,
        basis=basis,
    )


class RemoteAccessRecorder:
    """Sends each access to the session service's log before the answer goes out; the
    accesses of concurrent calls travel together (telemesh.group_commit), one
    RecordPatientAccess for many."""

    def __init__(self, clients: ServiceClients, service: str, timeout_seconds: float = 2.0):
        self._stub = session_pb2_grpc.SessionServiceStub(clients.channel("session"))
        self._service = service
        self._timeout = timeout_seconds
        self._group: GroupCommit[session_pb2.PatientAccess, None] = GroupCommit(
            self._send, max_batch=MAX_BATCH
        )

    async def _send(self, accesses: list[session_pb2.PatientAccess]) -> list[None]:
        await self._stub.RecordPatientAccess(
            session_pb2.RecordPatientAccessRequest(request_id=str(uuid.uuid4()), accesses=accesses),
            timeout=self._timeout,
        )
        return [None] * len(accesses)

    async def record(
        self, principal: Principal, patient_id: str, *, allowed: bool, basis: str
    ) -> None:
        if principal.is_service:
            return
        access = new_access(
            principal, patient_id, allowed=allowed, basis=basis, service=self._service
        )
        try:
            await self._group.submit(access)
        except grpc.aio.AioRpcError as error:
            if allowed:
                raise from_rpc_error(error, "session") from None
            log(
                logger,
                logging.WARNING,
                "a refused access could not be logged",
                patient_id=patient_id,
                grpc_status=error.code().name,
            )
