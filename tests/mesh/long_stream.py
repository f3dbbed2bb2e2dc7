"""The long server stream through the edge: a patient's SignalingService.JoinRoom.

The browser app holds it over gRPC-web for the whole call: it must outlive proxies'
timeouts. The clinician joining the room is the event that proves it still delivers.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from telemesh.signaling.v1 import signaling_pb2, signaling_pb2_grpc
from telemesh_tools.stack.process import ManagedProcess
from tests.support.flows import Visit
from tests.support.grpcweb import node_command
from tests.support.mesh import MeshUnderTest

AFFINITY_HEADER = "x-telemesh-visit-id"


class JoinRoom:
    """The patient in the visit's room; the clinician joining is the poke."""

    service = "telemesh.signaling.v1.SignalingService"
    method = "JoinRoom"

    def __init__(self) -> None:
        self.visit: Visit | None = None
        self.join_tokens: dict[str, str] = {}

    def prepare(self, mesh: MeshUnderTest) -> dict[str, Any]:
        """The Node client's call fields for this stream: request, token, headers."""
        self.visit, self.join_tokens = mesh.ready_visit()
        return {
            "request": {"joinToken": self.join_tokens["patient"]},
            "token": mesh.token("patient", self.visit.patient_id),
            "headers": {AFFINITY_HEADER: self.visit.visit_id},
        }

    def poke(self, mesh: MeshUnderTest) -> None:
        """The clinician joins: the patient's stream must deliver it."""
        assert self.visit is not None
        with mesh.edge_channel() as channel:
            call = signaling_pb2_grpc.SignalingServiceStub(channel).JoinRoom(
                signaling_pb2.JoinRoomRequest(join_token=self.join_tokens["clinician"]),
                metadata=(
                    *self.visit.clinician,
                    (AFFINITY_HEADER, self.visit.visit_id),
                ),
                timeout=15,
            )
            first = next(call)
            assert first.HasField("joined"), first
            call.cancel()

    def answers_poke(self, message: dict[str, Any]) -> bool:
        """Whether a streamed message (JSON) is the poke's answer."""
        return "peerJoined" in message


@dataclass
class OpenStream:
    """A gRPC-web server stream held open by the Node client, its events (JSON lines)
    in its log."""

    spec: JoinRoom
    process: ManagedProcess
    opened_at: float  # time.monotonic()

    @classmethod
    def open(cls, mesh: MeshUnderTest, output: Path) -> OpenStream:
        spec = JoinRoom()
        call = {
            "baseUrl": mesh.edge_url,
            "caFile": str(mesh.ca_bundle),
            "descriptorSet": str(mesh.descriptor_set()),
            "service": spec.service,
            "method": spec.method,
            **spec.prepare(mesh),
        }
        process = ManagedProcess("long-stream", node_command(call), dict(os.environ), output)
        return cls(spec, process.start(), time.monotonic())

    def events(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.process.logs().splitlines() if line]

    def close(self) -> None:
        self.process.stop(timeout=10)
