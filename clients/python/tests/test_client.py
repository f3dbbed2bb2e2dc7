"""The client against a tiny in-process ConsentService: retries on UNAVAILABLE for
idempotent calls only, one deadline for all attempts, token and traceparent on every
attempt, and error details decoded. Runs where the wheel is installed (pytest in the
fresh virtual environment of tests/mesh/test_partner_python_client.py)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from concurrent import futures

import grpc
import pytest
from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2
from telemesh_client import Retry, TelemeshClient, TelemeshError, edge_target, is_idempotent

from telemesh.consent.v1 import consent_pb2 as c
from telemesh.consent.v1 import consent_pb2_grpc

TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
CONSENT = "/telemesh.consent.v1.ConsentService/"
QUICK = Retry(attempts=4, initial_backoff=0.001, max_backoff=0.002)


class FlakyConsent(consent_pb2_grpc.ConsentServiceServicer):
    """Answers UNAVAILABLE to the first `failures` calls, then OK; records every call."""

    def __init__(self) -> None:
        self.failures = 0
        self.calls: list[tuple[str, dict[str, str]]] = []
        self.refusal: tuple[grpc.StatusCode, status_pb2.Status] | None = None

    def _attempt(self, method: str, context: grpc.ServicerContext) -> None:
        metadata = {key: str(value) for key, value in context.invocation_metadata()}
        self.calls.append((method, metadata))
        if len(self.calls) <= self.failures:
            context.abort(grpc.StatusCode.UNAVAILABLE, "try again")
        if self.refusal is not None:
            code, status = self.refusal
            raw = status.SerializeToString()
            context.set_trailing_metadata((("grpc-status-details-bin", raw),))
            context.abort(code, status.message)

    def GetConsent(
        self, request: c.GetConsentRequest, context: grpc.ServicerContext
    ) -> c.GetConsentResponse:
        self._attempt("GetConsent", context)
        return c.GetConsentResponse(consent=c.Consent(consent_id=request.consent_id))

    def CheckConsent(
        self, request: c.CheckConsentRequest, context: grpc.ServicerContext
    ) -> c.CheckConsentResponse:
        self._attempt("CheckConsent", context)
        return c.CheckConsentResponse(decision=c.DECISION_PERMIT)

    def GrantConsent(
        self, request: c.GrantConsentRequest, context: grpc.ServicerContext
    ) -> c.GrantConsentResponse:
        self._attempt(f"GrantConsent {request.request_id}", context)
        return c.GrantConsentResponse(consent=c.Consent(patient_id=request.patient_id))


@pytest.fixture
def service() -> Iterator[tuple[FlakyConsent, str]]:
    servicer = FlakyConsent()  # type: ignore[abstract]  # the other RPCs: UNIMPLEMENTED
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    consent_pb2_grpc.add_ConsentServiceServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield servicer, f"127.0.0.1:{port}"
    server.stop(None)


@pytest.fixture
def fake(service: tuple[FlakyConsent, str]) -> FlakyConsent:
    return service[0]


@pytest.fixture
def client(service: tuple[FlakyConsent, str]) -> Iterator[TelemeshClient]:
    channel = grpc.insecure_channel(service[1])
    with TelemeshClient(channel, token="tok-1", retry=QUICK) as api:
        yield api


def test_an_idempotent_read_is_retried_after_unavailable(
    fake: FlakyConsent, client: TelemeshClient
) -> None:
    fake.failures = 2
    answer = client.consent.GetConsent(
        c.GetConsentRequest(consent_id="k-1"), metadata=(("traceparent", TRACEPARENT),)
    )
    assert answer.consent.consent_id == "k-1"
    assert [method for method, _ in fake.calls] == ["GetConsent"] * 3
    for _, metadata in fake.calls:  # every attempt carries the token and the trace context
        assert metadata["authorization"] == "Bearer tok-1"
        assert metadata["traceparent"] == TRACEPARENT


def test_retries_stop_after_the_last_attempt(fake: FlakyConsent, client: TelemeshClient) -> None:
    fake.failures = 100
    with pytest.raises(TelemeshError) as raised:
        client.consent.GetConsent(c.GetConsentRequest(consent_id="k-1"))
    assert raised.value.code is grpc.StatusCode.UNAVAILABLE
    assert len(fake.calls) == QUICK.attempts


def test_a_check_is_not_retried(fake: FlakyConsent, client: TelemeshClient) -> None:
    """CheckConsent has side effects (every check is audited) and no request_id."""
    fake.failures = 1
    with pytest.raises(TelemeshError) as raised:
        client.consent.CheckConsent(c.CheckConsentRequest(patient_id="p-1"))
    assert raised.value.code is grpc.StatusCode.UNAVAILABLE
    assert [method for method, _ in fake.calls] == ["CheckConsent"]


def test_a_mutation_is_retried_only_with_a_request_id(
    fake: FlakyConsent, client: TelemeshClient
) -> None:
    fake.failures = 1
    with pytest.raises(TelemeshError):
        client.consent.GrantConsent(c.GrantConsentRequest(patient_id="p-1"))
    assert [method for method, _ in fake.calls] == ["GrantConsent "]

    fake.calls.clear()
    rid = str(uuid.uuid4())
    client.consent.GrantConsent(c.GrantConsentRequest(request_id=rid, patient_id="p-1"))
    assert [method for method, _ in fake.calls] == [f"GrantConsent {rid}"] * 2


def test_other_failures_are_not_retried_and_carry_their_details(
    fake: FlakyConsent, client: TelemeshClient
) -> None:
    info = error_details_pb2.ErrorInfo(
        reason="CONSENT_NOT_FOUND", domain="telemesh.dev", metadata={"id": "k-9"}
    )
    bad = error_details_pb2.BadRequest(
        field_violations=[
            error_details_pb2.BadRequest.FieldViolation(field="consent_id", description="unknown")
        ]
    )
    details = [any_pb2.Any(), any_pb2.Any()]
    details[0].Pack(info)
    details[1].Pack(bad)
    status = status_pb2.Status(code=5, message="no such consent", details=details)  # 5: NOT_FOUND
    fake.refusal = (grpc.StatusCode.NOT_FOUND, status)
    with pytest.raises(TelemeshError) as raised:
        client.consent.GetConsent(c.GetConsentRequest(consent_id="k-9"))
    error = raised.value
    assert (error.code, error.reason, error.domain) == (
        grpc.StatusCode.NOT_FOUND,
        "CONSENT_NOT_FOUND",
        "telemesh.dev",
    )
    assert error.metadata == {"id": "k-9"}
    assert [(v.field, v.description) for v in error.field_violations] == [("consent_id", "unknown")]
    assert str(error) == "NOT_FOUND CONSENT_NOT_FOUND: no such consent"
    assert len(fake.calls) == 1


def test_one_deadline_bounds_all_attempts(service: tuple[FlakyConsent, str]) -> None:
    """With attempts to spare, the call still ends when its deadline is spent."""
    fake, target = service
    fake.failures = 1_000_000
    endless = Retry(attempts=1_000_000, initial_backoff=0.01, max_backoff=0.01)
    with (
        TelemeshClient(grpc.insecure_channel(target), token="t", retry=endless) as api,
        pytest.raises(TelemeshError) as raised,
    ):
        api.consent.GetConsent(c.GetConsentRequest(consent_id="k-1"), timeout=0.5)
    assert raised.value.code in {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED}
    assert 1 < len(fake.calls) < 1_000


def test_the_clients_traceparent_unless_the_call_brings_its_own(
    service: tuple[FlakyConsent, str],
) -> None:
    fake, target = service
    own = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    with TelemeshClient(
        grpc.insecure_channel(target), token=lambda: "fresh", traceparent=lambda: TRACEPARENT
    ) as api:
        api.consent.GetConsent(c.GetConsentRequest(consent_id="k-1"))
        api.consent.GetConsent(
            c.GetConsentRequest(consent_id="k-1"), metadata=(("traceparent", own),)
        )
    assert [m["traceparent"] for _, m in fake.calls] == [TRACEPARENT, own]
    assert {m["authorization"] for _, m in fake.calls} == {"Bearer fresh"}


def test_idempotency_comes_from_the_contract() -> None:
    assert is_idempotent(CONSENT + "GetConsent", c.GetConsentRequest())
    assert is_idempotent(CONSENT + "ListConsents", c.ListConsentsRequest())
    assert not is_idempotent(CONSENT + "CheckConsent", c.CheckConsentRequest())
    assert not is_idempotent(CONSENT + "GrantConsent", c.GrantConsentRequest())
    assert is_idempotent(CONSENT + "GrantConsent", c.GrantConsentRequest(request_id="r-1"))
    assert not is_idempotent("/no.such.Service/Method", c.GetConsentRequest())


def test_backoff_grows_up_to_its_cap() -> None:
    retry = Retry(initial_backoff=0.1, multiplier=2.0, max_backoff=0.5)
    for number, bound in [(1, 0.1), (2, 0.2), (3, 0.4), (4, 0.5), (9, 0.5)]:
        for _ in range(20):
            assert bound / 2 <= retry.backoff(number) <= bound


def test_edge_urls() -> None:
    assert edge_target("https://localhost:8443") == "localhost:8443"
    assert edge_target("https://edge.example.org") == "edge.example.org:443"
    assert edge_target("localhost:8443") == "localhost:8443"
    with pytest.raises(ValueError, match="https://"):
        edge_target("http://localhost:8443")
