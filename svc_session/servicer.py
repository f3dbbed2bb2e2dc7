"""SessionService. Methods not built yet answer UNIMPLEMENTED (the generated base)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from telemesh.session.v1 import session_pb2_grpc

if TYPE_CHECKING:
    from svc_session.app import SessionApp


class SessionServicer(session_pb2_grpc.SessionServiceServicer):
    def __init__(self, app: SessionApp) -> None:
        self.app = app
