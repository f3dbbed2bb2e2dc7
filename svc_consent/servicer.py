"""ConsentService. Methods not built yet answer UNIMPLEMENTED (the generated base)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from telemesh.consent.v1 import consent_pb2_grpc

if TYPE_CHECKING:
    from svc_consent.app import ConsentApp


class ConsentServicer(consent_pb2_grpc.ConsentServiceServicer):
    def __init__(self, app: ConsentApp) -> None:
        self.app = app
