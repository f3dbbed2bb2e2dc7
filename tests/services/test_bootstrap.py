"""Every `python -m svc_<name>`: health, reflection, authentication and bad bytes."""

from __future__ import annotations

from collections.abc import Iterator

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)
from grpc_status import rpc_status

from telemesh.billing.v1 import billing_pb2
from telemesh.consent.v1 import consent_pb2
from telemesh.session.v1 import session_pb2
from telemesh.signaling.v1 import signaling_pb2
from tests.support.harness import Stack, Tokens

SERVICE_NAMES = {
    "session": session_pb2.DESCRIPTOR.services_by_name["SessionService"].full_name,
    "signaling": signaling_pb2.DESCRIPTOR.services_by_name["SignalingService"].full_name,
    "consent": consent_pb2.DESCRIPTOR.services_by_name["ConsentService"].full_name,
    "billing": billing_pb2.DESCRIPTOR.services_by_name["BillingService"].full_name,
}
# One unary method of each service, called with raw bytes below.
A_METHOD = {
    "session": "GetVisit",
    "signaling": "GetPreCallCheck",  # its request has a string field to mangle
    "consent": "GetConsent",
    "billing": "GetCharge",
}


@pytest.fixture(scope="module")
def all_services(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """The four services once for the module (SQLite), as `python -m svc_<name>`."""
    stack = Stack(tmp_path_factory.mktemp("home"), "sqlite")
    stack.start(*SERVICE_NAMES)
    yield stack
    stack.close()


@pytest.mark.parametrize("name", list(SERVICE_NAMES))
def test_health_is_serving(all_services: Stack, name: str) -> None:
    with grpc.insecure_channel(all_services.addresses[name]) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        for service in ("", SERVICE_NAMES[name]):
            reply = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
            assert reply.status == health_pb2.HealthCheckResponse.SERVING


@pytest.mark.parametrize("name", list(SERVICE_NAMES))
def test_reflection_lists_the_service(all_services: Stack, name: str) -> None:
    with grpc.insecure_channel(all_services.addresses[name]) as channel:
        database = ProtoReflectionDescriptorDatabase(channel)
        services = set(database.get_services())
        assert SERVICE_NAMES[name] in services
        assert "grpc.health.v1.Health" in services
        descriptor = database.FindFileContainingSymbol(SERVICE_NAMES[name])
        assert descriptor.package == f"telemesh.{name}.v1"


def _raw_call(address: str, method: str, payload: bytes, token: str | None) -> grpc.RpcError:
    with grpc.insecure_channel(address) as channel:
        call = channel.unary_unary(
            method, request_serializer=lambda b: b, response_deserializer=lambda b: b
        )
        metadata = (("authorization", f"Bearer {token}"),) if token else None
        with pytest.raises(grpc.RpcError) as caught:
            call(payload, metadata=metadata, timeout=10)
        return caught.value


@pytest.mark.parametrize("name", list(SERVICE_NAMES))
def test_a_call_without_credentials_is_unauthenticated(all_services: Stack, name: str) -> None:
    method = f"/{SERVICE_NAMES[name]}/{A_METHOD[name]}"
    error = _raw_call(all_services.addresses[name], method, b"", None)
    assert error.code() == grpc.StatusCode.UNAUTHENTICATED
    status = rpc_status.from_call(error)
    assert status is not None
    assert status.details, "a rich status with ErrorInfo"


@pytest.mark.parametrize("name", list(SERVICE_NAMES))
def test_a_forged_token_is_unauthenticated(all_services: Stack, name: str) -> None:
    method = f"/{SERVICE_NAMES[name]}/{A_METHOD[name]}"
    error = _raw_call(all_services.addresses[name], method, b"", "e30.e30.c2ln")
    assert error.code() == grpc.StatusCode.UNAUTHENTICATED


GARBAGE = [
    pytest.param(b"\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01", id="bad-varint"),
    pytest.param(b"\x0a\x05ab", id="truncated-length"),
    pytest.param(b"\x0a\x02\xc3\x28", id="invalid-utf8-string"),
    pytest.param(b"\x08\x96\x01", id="varint-where-string-expected"),
    pytest.param(b"\x0f", id="bad-wire-type"),
    pytest.param(bytes(range(256)) * 4, id="noise"),
]


@pytest.mark.parametrize("payload", GARBAGE)
@pytest.mark.parametrize("name", list(SERVICE_NAMES))
def test_malformed_requests_get_a_clean_status(
    all_services: Stack, name: str, payload: bytes
) -> None:
    """Bytes that do not parse, or fields of the wrong wire type: never UNKNOWN or a crash."""
    tokens = Tokens(all_services.home)
    token = tokens.issuer.mint("p-malformed", "patient")
    method = f"/{SERVICE_NAMES[name]}/{A_METHOD[name]}"
    error = _raw_call(all_services.addresses[name], method, payload, token)
    assert error.code() not in (grpc.StatusCode.UNKNOWN, grpc.StatusCode.INTERNAL)
    if error.code() == grpc.StatusCode.INVALID_ARGUMENT:
        status = rpc_status.from_call(error)
        assert status is not None
    # And the service is still there.
    with grpc.insecure_channel(all_services.addresses[name]) as channel:
        reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest())
        assert reply.status == health_pb2.HealthCheckResponse.SERVING
