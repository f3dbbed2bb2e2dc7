"""What the signaling service asks of the session service, through its generated stub."""

from __future__ import annotations

import uuid
from datetime import datetime

import grpc
from opentelemetry import propagate
from sqlmodel.ext.asyncio.session import AsyncSession

from telemesh.clients import ServiceClients, on_behalf_of_caller
from telemesh.errors import FailedPrecondition, from_rpc_error
from telemesh.outbox import RECORD_CONNECTION_EVENT, enqueue
from telemesh.session.v1 import session_pb2, session_pb2_grpc
from telemesh.timestamps import timestamp

# Request ids we derive for calls to the session service live in their own namespace.
_NAMESPACE = uuid.UUID("5b0f1c64-8d0e-4c55-9b53-51c7a1f0c0de")
_TIMEOUT = 10.0


def derived_request_id(*parts: str) -> str:
    return str(uuid.uuid5(_NAMESPACE, "\0".join(parts)))


class SessionLink:
    def __init__(self, clients: ServiceClients) -> None:
        self.clients = clients

    def _stub(self) -> session_pb2_grpc.SessionServiceAsyncStub:
        return session_pb2_grpc.SessionServiceStub(self.clients.channel("session"))

    async def join_token_keys(self) -> str:
        try:
            reply = await self._stub().GetJoinTokenKeys(
                session_pb2.GetJoinTokenKeysRequest(), timeout=_TIMEOUT
            )
        except grpc.aio.AioRpcError as error:
            raise from_rpc_error(error, "session") from None
        return reply.jwks_json

    async def admit(self, visit_id: str, request_id: str) -> None:
        """Admits the patient in the session service as the calling clinician.

        A visit already in progress (admitted before a restart of this service) is
        what we want; any other refusal is the caller's FAILED_PRECONDITION.
        """
        stub = self._stub()
        metadata = tuple(on_behalf_of_caller())
        try:
            await stub.AdmitPatient(
                session_pb2.AdmitPatientRequest(
                    request_id=derived_request_id("admit", request_id), visit_id=visit_id
                ),
                metadata=metadata,
                timeout=_TIMEOUT,
            )
            return
        except grpc.aio.AioRpcError as error:
            if error.code() != grpc.StatusCode.FAILED_PRECONDITION:
                raise from_rpc_error(error, "session") from None
        try:
            reply = await stub.GetVisit(
                session_pb2.GetVisitRequest(visit_id=visit_id), metadata=metadata, timeout=_TIMEOUT
            )
        except grpc.aio.AioRpcError as error:
            raise from_rpc_error(error, "session") from None
        if reply.visit.state != session_pb2.VISIT_STATE_IN_PROGRESS:
            raise FailedPrecondition(
                "VISIT_NOT_ADMITTABLE",
                "the visit cannot be admitted in its current state",
                {"visit_state": session_pb2.VisitState.Name(reply.visit.state)},
            )


def enqueue_connection_event(
    session: AsyncSession, *, visit_id: str, connected: bool, when: datetime, period: str
) -> None:
    """Queues RecordConnectionEvent in the caller's transaction (the outbox delivers it).

    `period` names the connected period (room and its opening); the request id derives
    from it, so a redelivery is a replay in the session service.
    """
    kind = (
        session_pb2.CONNECTION_EVENT_KIND_CONNECTED
        if connected
        else session_pb2.CONNECTION_EVENT_KIND_DISCONNECTED
    )
    stamp = timestamp(when)
    request_id = derived_request_id("connection", period, str(kind))
    request = session_pb2.RecordConnectionEventRequest(
        request_id=request_id, visit_id=visit_id, kind=kind, event_time=stamp
    )
    carrier: dict[str, str] = {}
    propagate.inject(carrier)  # the event joins the trace of the call that caused it
    enqueue(
        session,
        target="session",
        method=RECORD_CONNECTION_EVENT,
        key=request_id,
        payload=request.SerializeToString(),
        traceparent=carrier.get("traceparent", ""),
    )
