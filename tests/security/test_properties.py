"""A property-based pass over every RPC of the four services, under every role.

Requests are generated from the protobuf descriptors (a new RPC is covered without a
change here) and sent to real service processes (SQLite) in which two patients, A and
B, each have a clinician, a visit, consents, a charge and a room. Each request goes out
once per role. Two properties must hold:

- the status is one the method may answer: never INTERNAL or UNKNOWN;
- no caller acting as patient A, as A's clinician, as a partner clinic without B's
  consent, or without a token ever gets B's data (ids, PHI) in an answer.

Streaming RPCs are read up to their first message with a short deadline.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import grpc
import pytest
from google.protobuf.descriptor import MethodDescriptor
from google.protobuf.message import Message
from google.protobuf.message_factory import GetMessageClass
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from telemesh.billing.v1 import billing_pb2, billing_pb2_grpc
from telemesh.consent.v1 import consent_pb2
from telemesh.session.v1 import session_pb2
from telemesh.signaling.v1 import signaling_pb2, signaling_pb2_grpc
from tests.security.request_strategies import Pools, messages
from tests.security.support import four_services
from tests.support.billing import completion
from tests.support.flows import Flows, Metadata, Visit, rid
from tests.support.harness import REPO

Code = grpc.StatusCode
MODULES = {
    "session": session_pb2,
    "signaling": signaling_pb2,
    "consent": consent_pb2,
    "billing": billing_pb2,
}
ROLES = ("patient", "clinician", "billing", "admin", "partner", "service", "anonymous")
# Callers that must never see patient B's data: A, A's clinician, a partner clinic
# B never consented to share with, and nobody at all.
MUST_NOT_SEE_B = frozenset({"patient", "clinician", "partner", "anonymous"})
PROTOS = REPO / "protos"
EXAMPLES = int(os.environ.get("TELEMESH_PROPERTY_EXAMPLES", "10"))
STREAM_SECONDS = 1.0
UNARY_SECONDS = 15.0

# What any method may answer: success, or a documented refusal (README "Errors").
DOCUMENTED = frozenset(
    {
        Code.OK,
        Code.INVALID_ARGUMENT,
        Code.UNAUTHENTICATED,
        Code.PERMISSION_DENIED,
        Code.NOT_FOUND,
        Code.FAILED_PRECONDITION,
        Code.ALREADY_EXISTS,
        Code.ABORTED,
        Code.RESOURCE_EXHAUSTED,
    }
)
# A stream that is open and quiet outlives the short read.
STREAMING_EXTRA = frozenset({Code.DEADLINE_EXCEEDED})


def all_methods() -> list[MethodDescriptor]:
    return [
        method
        for module in MODULES.values()
        for service in module.DESCRIPTOR.services_by_name.values()
        for method in service.methods
    ]


def method_id(method: MethodDescriptor) -> str:
    return f"{method.containing_service.name}.{method.name}"


# --- the world: processes, two patients' data, one event loop ---------------------------


@dataclass
class Patient:
    """A patient's visit and everything of theirs that an answer could carry."""

    visit: Visit
    room_id: str = ""
    join_tokens: list[str] = field(default_factory=list)
    consent_ids: list[str] = field(default_factory=list)
    charge_ids: list[str] = field(default_factory=list)
    phi: list[str] = field(default_factory=list)

    def markers(self) -> set[str]:
        return {
            self.visit.patient_id,
            self.visit.visit_id,
            self.room_id,
            *self.consent_ids,
            *self.charge_ids,
            *self.phi,
        }


class World:
    """Everything the pass works with; a plain class so that a failing example prints
    one short line for it."""

    def __init__(
        self,
        runner: asyncio.Runner,
        flows: Flows,
        a: Patient,
        b: Patient,
        pools: list[Pools],
        metadata: dict[str, Metadata],
    ) -> None:
        self.runner = runner
        self.flows = flows
        self.a = a
        self.b = b
        # Ids for a request: all of A's, all of B's (a request about B that hangs
        # together, which is what gets past the first checks to authorization), or a mix.
        self.pools = pools
        self.metadata = metadata

    def __repr__(self) -> str:
        return f"World(a={self.a.visit.patient_id}, b={self.b.visit.patient_id})"


async def _patient(flows: Flows, tag: str) -> Patient:
    name, email, phone = f"Pat {tag} Example", f"pat.{tag}@example.org", f"+1 555 01{tag}"
    visit = await flows.ready_visit(display_name=name, email=email, phone=phone)
    patient = Patient(visit, phi=[name, email, phone])
    recording = await flows.consent.GrantConsent(
        consent_pb2.GrantConsentRequest(
            request_id=rid(),
            patient_id=visit.patient_id,
            category=consent_pb2.CONSENT_CATEGORY_RECORDING,
            text_version="2026-01",
            text_sha256="0" * 64,
        ),
        metadata=visit.patient,
    )
    listed = await flows.consent.ListConsents(
        consent_pb2.ListConsentsRequest(patient_id=visit.patient_id), metadata=visit.patient
    )
    patient.consent_ids = [c.consent_id for c in listed.consents] + [recording.consent.consent_id]
    billing = billing_pb2_grpc.BillingServiceStub(flows.channel("billing"))
    charge = await billing.RecordVisitCompletion(
        completion(
            patient_id=visit.patient_id,
            visit_id=visit.visit_id,
            clinician_id=visit.clinician_id,
            complete_time=datetime.now(UTC) - timedelta(minutes=1),
        ),
        metadata=flows.user("service", "session"),
    )
    patient.charge_ids = [charge.charge.charge_id]
    patient.join_tokens = [
        await flows.join_token(visit, "patient"),
        await flows.join_token(visit, "clinician"),
    ]
    signaling = signaling_pb2_grpc.SignalingServiceStub(flows.channel("signaling"))
    stream = signaling.JoinRoom(
        signaling_pb2.JoinRoomRequest(join_token=patient.join_tokens[0]), metadata=visit.patient
    )
    first = await stream.read()
    assert isinstance(first, signaling_pb2.JoinRoomResponse), first
    patient.room_id = first.joined.room_id
    stream.cancel()
    return patient


def _pools(name: str, patients: list[Patient], now: int) -> Pools:
    pools = Pools(name, now)
    for patient in patients:
        visit = patient.visit
        pools.add("patient_id", visit.patient_id)
        pools.add("clinician_id", visit.clinician_id)
        pools.add("visit_id", visit.visit_id)
        pools.add("room_id", patient.room_id)
        pools.add("join_token", *patient.join_tokens)
        pools.add("consent_id", *patient.consent_ids)
        pools.add("charge_id", *patient.charge_ids)
    pools.add("partner_clinic_id", "clinic-x")
    pools.add("practice_id", "practice-1")
    return pools


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    """The four services on SQLite (this pass is about answers, not storage), patients A
    and B with data, and the event loop every call of the module runs on."""
    with four_services(tmp_path_factory.mktemp("home"), "sqlite") as stack:
        runner = asyncio.Runner()
        flows = Flows(stack)
        try:
            a = runner.run(_patient(flows, "11"))
            b = runner.run(_patient(flows, "99"))
            metadata = {
                "patient": flows.user("patient", a.visit.patient_id),
                "clinician": flows.user("clinician", a.visit.clinician_id),
                "billing": flows.user("billing", "biller-1"),
                "admin": flows.user("admin", "admin-1"),
                "partner": flows.user("partner", "clinic-x"),
                "service": flows.user("service", "session"),
                "anonymous": (),
            }
            now = int(datetime.now(UTC).timestamp())
            pools = [
                _pools("A", [a], now),
                _pools("B", [b], now),
                _pools("A and B", [a, b], now),
            ]
            yield World(runner, flows, a, b, pools, metadata)
        finally:
            runner.run(flows.close())
            runner.close()


# --- one call ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Answer:
    code: grpc.StatusCode
    payload: bytes  # the response message, or the error's message and details

    def carries(self, marker: str) -> bool:
        return marker.encode() in self.payload


def _error_payload(error: grpc.aio.AioRpcError) -> bytes:
    parts = [(error.details() or "").encode()]
    for key, value in error.trailing_metadata() or ():
        if key == "grpc-status-details-bin":
            parts.append(value if isinstance(value, bytes) else value.encode())
    return b"\n".join(parts)


async def call(
    channel: grpc.aio.Channel, method: MethodDescriptor, request: Message, metadata: Metadata
) -> Answer:
    path = f"/{method.containing_service.full_name}/{method.name}"
    response_type = GetMessageClass(method.output_type)
    try:
        if method.server_streaming:
            open_stream: grpc.aio.UnaryStreamMultiCallable[Message, Message] = channel.unary_stream(
                path,
                request_serializer=_serialize,
                response_deserializer=response_type.FromString,
            )
            stream = open_stream(request, metadata=metadata, timeout=STREAM_SECONDS)
            try:
                first = await stream.read()
            finally:
                stream.cancel()
            payload = first.SerializeToString() if isinstance(first, Message) else b""
            return Answer(Code.OK, payload)
        unary: grpc.aio.UnaryUnaryMultiCallable[Message, Message] = channel.unary_unary(
            path, request_serializer=_serialize, response_deserializer=response_type.FromString
        )
        reply = await unary(request, metadata=metadata, timeout=UNARY_SECONDS)
        return Answer(Code.OK, reply.SerializeToString())
    except grpc.aio.AioRpcError as error:
        return Answer(error.code(), _error_payload(error))


def _serialize(message: Message) -> bytes:
    return message.SerializeToString()


def allowed_codes(method: MethodDescriptor) -> frozenset[grpc.StatusCode]:
    codes = DOCUMENTED
    if method.server_streaming:
        codes |= STREAMING_EXTRA
    return codes


def leaked(world: World, request: Message, answer: Answer) -> set[str]:
    """B's markers in an answer. An error may echo what the caller sent (a NotFound
    names the id asked for): only what the request did not hold counts there."""
    sent = request.SerializeToString()
    return {
        marker
        for marker in world.b.markers()
        if marker
        and answer.carries(marker)
        and (answer.code == Code.OK or marker.encode() not in sent)
    }


# --- the property -----------------------------------------------------------------------


@pytest.mark.parametrize("method", all_methods(), ids=method_id)
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,  # the same requests on every run: CI never flakes on a new draw
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(data=st.data())
def test_every_answer_is_documented_and_never_another_patients(
    world: World, method: MethodDescriptor, data: st.DataObject
) -> None:
    pools = data.draw(st.sampled_from(world.pools), label="ids of")
    request = data.draw(messages(method.input_type, pools), label="request")
    channel = world.flows.channel(method.containing_service.name.removesuffix("Service").lower())
    allowed = allowed_codes(method)
    problems = []
    for role in ROLES:
        answer = world.runner.run(call(channel, method, request, world.metadata[role]))
        if answer.code not in allowed:
            problems.append(f"{role}: {answer.code.name} {answer.payload[:200]!r}")
        if role in MUST_NOT_SEE_B:
            leaks = leaked(world, request, answer)
            if leaks:
                problems.append(f"{role}: {answer.code.name} carries patient B's {sorted(leaks)}")
    assert not problems, f"{method_id(method)} {request}\n" + "\n".join(problems)


def test_every_service_of_the_contract_is_covered() -> None:
    """The pass reads the descriptors: a new RPC is in it; a new service in protos/ must
    be added to MODULES."""
    declared = {
        f"{path.parent.parent.name}.{line.split()[1]}"
        for path in PROTOS.glob("telemesh/*/v1/*.proto")
        for line in path.read_text().splitlines()
        if line.startswith("service ")
    }
    covered = {
        f"{m.containing_service.file.package.split('.')[1]}.{m.containing_service.name}"
        for m in all_methods()
    }
    assert declared == covered
