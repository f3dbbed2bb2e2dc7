"""The signaling service's wiring: its database and its servicer on the shared bootstrap."""

from __future__ import annotations

import grpc

from svc_signaling.servicer import SignalingServicer
from telemesh.app import ServiceAppBase
from telemesh.signaling.v1 import signaling_pb2, signaling_pb2_grpc


class SignalingApp(ServiceAppBase):
    name = "signaling"
    package = "svc_signaling"
    service_names = (signaling_pb2.DESCRIPTOR.services_by_name["SignalingService"].full_name,)

    async def register(self, server: grpc.aio.Server) -> None:
        signaling_pb2_grpc.add_SignalingServiceServicer_to_server(SignalingServicer(self), server)  # type: ignore[abstract]
