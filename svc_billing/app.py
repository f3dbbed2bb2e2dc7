"""The billing service's wiring: its database and its servicer on the shared bootstrap."""

from __future__ import annotations

import grpc

from svc_billing.servicer import BillingServicer
from telemesh.app import ServiceAppBase
from telemesh.billing.v1 import billing_pb2, billing_pb2_grpc


class BillingApp(ServiceAppBase):
    name = "billing"
    package = "svc_billing"
    service_names = (billing_pb2.DESCRIPTOR.services_by_name["BillingService"].full_name,)

    async def register(self, server: grpc.aio.Server) -> None:
        billing_pb2_grpc.add_BillingServiceServicer_to_server(BillingServicer(self), server)  # type: ignore[abstract]
