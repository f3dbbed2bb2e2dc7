"""The long server stream through the edge: which RPC, and how to make it speak.

A patient's SignalingService.JoinRoom (over gRPC-web, as the browser app holds it for
the whole call) is the stream that must outlive proxies' timeouts; the clinician joining
the room is the event that proves it still delivers. An administrator's
ConsentService.WatchConsentChanges (with heartbeats) is the stand-in for when JoinRoom
cannot be joined (signaling or session broken): set LONG_STREAM = WatchConsent().
"""

from __future__ import annotations

import json
import subprocess
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Protocol

from telemesh.consent.v1 import consent_pb2, consent_pb2_grpc
from telemesh.signaling.v1 import signaling_pb2, signaling_pb2_grpc
from tests.flows import Visit
from tests.mesh.stack import MeshUnderTest

AFFINITY_HEADER = "x-telemesh-visit-id"


class StreamSpec(Protocol):
    service: str
    method: str

    def prepare(self, mesh: MeshUnderTest) -> dict[str, Any]:
        """The Node client's call fields for this stream: request, token, headers."""

    def poke(self, mesh: MeshUnderTest) -> None:
        """Makes something happen that the stream must deliver."""

    def answers_poke(self, message: dict[str, Any]) -> bool:
        """Whether a streamed message (JSON) is the poke's answer."""


class JoinRoom:
    """The patient in the visit's room; the clinician joining is the poke."""

    service = "telemesh.signaling.v1.SignalingService"
    method = "JoinRoom"

    def __init__(self) -> None:
        self.visit: Visit | None = None
        self.join_tokens: dict[str, str] = {}

    def prepare(self, mesh: MeshUnderTest) -> dict[str, Any]:
        self.visit, self.join_tokens = mesh.ready_visit()
        return {
            "request": {"joinToken": self.join_tokens["patient"]},
            "token": mesh.token("patient", self.visit.patient_id),
            "headers": {AFFINITY_HEADER: self.visit.visit_id},
        }

    def poke(self, mesh: MeshUnderTest) -> None:
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
        return "peerJoined" in message


class WatchConsent:
    """An administrator's consent watch; a patient granting consent is the poke."""

    service = "telemesh.consent.v1.ConsentService"
    method = "WatchConsentChanges"
    patient = "p-longstream"

    def prepare(self, mesh: MeshUnderTest) -> dict[str, Any]:
        return {
            "request": {"patientId": self.patient, "heartbeatInterval": "20s"},
            "token": mesh.token("admin", "a-longstream"),
        }

    def poke(self, mesh: MeshUnderTest) -> None:
        with mesh.edge_channel() as channel:
            consent_pb2_grpc.ConsentServiceStub(channel).GrantConsent(
                consent_pb2.GrantConsentRequest(
                    request_id=str(uuid.uuid4()),
                    patient_id=self.patient,
                    category=consent_pb2.CONSENT_CATEGORY_TELEHEALTH,
                    text_version="2026-01",
                    text_sha256="ab" * 32,
                ),
                metadata=(("authorization", f"Bearer {mesh.token('patient', self.patient)}"),),
                timeout=10,
            )

    def answers_poke(self, message: dict[str, Any]) -> bool:
        return "change" in message


def long_stream_spec() -> StreamSpec:
    """The stream the 60-second test holds open (see the module's doc)."""
    return JoinRoom()


@dataclass
class OpenStream:
    """A gRPC-web server stream held open by the Node client, its events in a file."""

    spec: StreamSpec
    process: subprocess.Popen[bytes]
    output: Path
    opened_at: float
    _sink: IO[bytes] = field(repr=False)

    def events(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.output.read_text().splitlines() if line]

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)
        self._sink.close()
