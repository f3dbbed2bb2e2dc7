"""The HIPAA access log (45 CFR 164.312(b)) from the side of the service that serves an
access: every decision about a patient's record, allowed or refused, becomes a
`PatientAccess` (who, which patient, which call, when, the basis or refusal reason;
never the PHI itself).

The log itself is kept by the session service, hash-chained with the runtime's one
chain implementation (telemesh.hash_chain). Every service logs through a
`GroupedAccessRecorder` before it answers (the others with `remote_recorder`, the session
service with its own `local_recorder`): an allowed access that cannot be logged is not
served (UNAVAILABLE, fail closed); a refusal stands either way. Calls between
services are system work, not a person's access, and are not logged here (the consent
service's own audit trail records every consent check).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable
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


class GroupedAccessRecorder:
    """Appends each access to the log before the answer goes out; the accesses of
    concurrent calls are sent together (telemesh.group_commit) by `send`: the session
    service appends them to its own chain, the others call RecordPatientAccess. An
    allowed access that cannot be logged raises (not served); a refusal stands."""

    def __init__(
        self,
        service: str,
        send: Callable[[list[session_pb2.PatientAccess]], Awaitable[None]],
        *,
        max_batch: int = MAX_BATCH,
    ) -> None:
        self._service = service
        self._send = send
        self._group: GroupCommit[session_pb2.PatientAccess, None] = GroupCommit(
            self._send_all, max_batch=max_batch
        )

    async def _send_all(self, accesses: list[session_pb2.PatientAccess]) -> list[None]:
        await self._send(accesses)
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
        except Exception as error:
            if allowed:
                raise
            log(
                logger,
                logging.WARNING,
                "a refused access could not be logged",
                patient_id=patient_id,
                error=type(error).__name__,
            )


def remote_recorder(
    clients: ServiceClients, service: str, timeout_seconds: float = 2.0
) -> GroupedAccessRecorder:
    """The recorder of a service other than session: RecordPatientAccess, one call for
    the accesses of concurrent calls; the session service unreachable is UNAVAILABLE."""
    stub = session_pb2_grpc.SessionServiceStub(clients.channel("session"))

    async def send(accesses: list[session_pb2.PatientAccess]) -> None:
        try:
            await stub.RecordPatientAccess(
                session_pb2.RecordPatientAccessRequest(
                    request_id=str(uuid.uuid4()), accesses=accesses
                ),
                timeout=timeout_seconds,
            )
        except grpc.aio.AioRpcError as error:
            raise from_rpc_error(error, "session") from None

    return GroupedAccessRecorder(service, send)
