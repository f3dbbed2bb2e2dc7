"""The session service's wiring: its database and its servicer on the shared bootstrap."""

from __future__ import annotations

import grpc

from svc_session.servicer import SessionServicer
from telemesh.app import ServiceAppBase
from telemesh.session.v1 import session_pb2, session_pb2_grpc


class SessionApp(ServiceAppBase):
    name = "session"
    package = "svc_session"
    service_names = (session_pb2.DESCRIPTOR.services_by_name["SessionService"].full_name,)

    async def register(self, server: grpc.aio.Server) -> None:
        session_pb2_grpc.add_SessionServiceServicer_to_server(SessionServicer(self), server)  # type: ignore[abstract]
