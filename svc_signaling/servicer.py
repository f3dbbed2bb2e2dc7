"""SignalingService. Methods not built yet answer UNIMPLEMENTED (the generated base)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from telemesh.signaling.v1 import signaling_pb2_grpc

if TYPE_CHECKING:
    from svc_signaling.app import SignalingApp


class SignalingServicer(signaling_pb2_grpc.SignalingServiceServicer):
    def __init__(self, app: SignalingApp) -> None:
        self.app = app
