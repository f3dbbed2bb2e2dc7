"""The consent service's wiring: its database and its servicer on the shared bootstrap."""

from __future__ import annotations

import grpc

from svc_consent.servicer import ConsentServicer
from telemesh.app import ServiceAppBase
from telemesh.consent.v1 import consent_pb2, consent_pb2_grpc


class ConsentApp(ServiceAppBase):
    name = "consent"
    package = "svc_consent"
    service_names = (consent_pb2.DESCRIPTOR.services_by_name["ConsentService"].full_name,)

    async def register(self, server: grpc.aio.Server) -> None:
        consent_pb2_grpc.add_ConsentServiceServicer_to_server(ConsentServicer(self), server)  # type: ignore[abstract]
