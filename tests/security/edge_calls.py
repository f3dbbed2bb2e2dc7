"""Calls the security tests make against a real `telemesh up`: through the edge (gRPC
over HTTP/2 and hand-framed gRPC-web) and through a service's sidecar (that service's
identity), each answering the status code and message the caller saw."""

from __future__ import annotations

from pathlib import Path

import grpc

from telemesh.session.v1 import session_pb2, session_pb2_grpc
from tests.support import grpcweb
from tests.support.mesh import MeshUnderTest

SESSION = "telemesh.session.v1.SessionService"
# A call every end user may make through the edge: its answer says nothing but whether
# the caller got past authentication (an unknown clinician is NOT_FOUND).
EDGE_PATH = f"/{SESSION}/GetClinician"


def start_mesh(home: Path, **env: str) -> MeshUnderTest:
    return MeshUnderTest.start(home, **env)


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


def through_edge(mesh: MeshUnderTest, token: str | None) -> tuple[grpc.StatusCode, str]:
    """GetClinician through the edge over gRPC (HTTP/2)."""
    metadata = tuple(bearer(token).items()) if token is not None else ()
    with mesh.edge_channel() as channel:
        try:
            session_pb2_grpc.SessionServiceStub(channel).GetClinician(
                session_pb2.GetClinicianRequest(clinician_id="c-nobody"),
                metadata=metadata,
                timeout=10,
            )
        except grpc.RpcError as error:
            return error.code(), error.details() or ""
    return grpc.StatusCode.OK, ""


def through_edge_grpc_web(
    mesh: MeshUnderTest, headers: dict[str, str], query: str = ""
) -> grpcweb.GrpcWebReply:
    """GetClinician through the edge as a browser sends it (HTTP/1.1 gRPC-web)."""
    request = session_pb2.GetClinicianRequest(clinician_id="c-nobody").SerializeToString()
    path = f"{EDGE_PATH}?{query}" if query else EDGE_PATH
    return grpcweb.post(mesh.edge_address, mesh.ca_bundle, path, request, headers)


def through_sidecar(mesh: MeshUnderTest, caller: str, token: str) -> tuple[grpc.StatusCode, str]:
    """GetJoinTokenKeys on the session service from `caller`'s sidecar outbound socket,
    carrying a user's token: the session service verifies the token itself, no edge."""
    with mesh.as_service(caller) as channel:
        try:
            session_pb2_grpc.SessionServiceStub(channel).GetJoinTokenKeys(
                session_pb2.GetJoinTokenKeysRequest(),
                metadata=tuple(bearer(token).items()),
                timeout=10,
            )
        except grpc.RpcError as error:
            return error.code(), error.details() or ""
    return grpc.StatusCode.OK, ""
