"""BillingService. Methods not built yet answer UNIMPLEMENTED (the generated base)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from telemesh.billing.v1 import billing_pb2_grpc

if TYPE_CHECKING:
    from svc_billing.app import BillingApp


class BillingServicer(billing_pb2_grpc.BillingServiceServicer):
    def __init__(self, app: BillingApp) -> None:
        self.app = app
