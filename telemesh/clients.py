"""Calls from one Telemesh service to another, through generated stubs only.

`ServiceClients` keeps one channel per target service. Every call carries the trace
context (`traceparent`) in a CLIENT span, and credentials: the caller's own end-user
token when the call is made on the user's behalf (`on_behalf_of_caller()`), otherwise
the service's own token from the dev issuer (TELEMESH_SERVICE_TOKENS). Behind the mesh,
addresses point at the local sidecar, which adds mutual TLS and the service identity.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from typing import Any

import grpc
from opentelemetry import propagate, trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from telemesh.auth import current_bearer_token
from telemesh.config import RuntimeSettings
from telemesh.identity.tokens import DevIssuer

tracer = trace.get_tracer("telemesh.rpc.client")

# Retries of idempotent failures are transparent: every mutating RPC carries a
# request_id, so a repeat is safe.
_SERVICE_CONFIG = json.dumps(
    {
        "methodConfig": [
            {
                "name": [{}],
                "retryPolicy": {
                    "maxAttempts": 4,
                    "initialBackoff": "0.05s",
                    "maxBackoff": "1s",
                    "backoffMultiplier": 2,
                    "retryableStatusCodes": ["UNAVAILABLE"],
                },
            }
        ]
    }
)

CHANNEL_OPTIONS: Sequence[tuple[str, Any]] = (
    ("grpc.service_config", _SERVICE_CONFIG),
    ("grpc.enable_retries", 1),
    ("grpc.keepalive_time_ms", 30_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    # A peer that restarts is back in a second or two: reconnect that fast rather than
    # after gRPC's default backoff of up to two minutes.
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 1_000),
)

SERVICE_TOKEN_TTL = 3600
# Services whose replicas each hold some visits' state in memory (a signaling room lives
# in one replica), and the header the mesh hashes on to send every call about a visit to
# the same replica (mesh/allowlist.yaml `affinity`; Istio's DestinationRule). Callers
# put the visit id in it.
VISIT_AFFINITY = {"signaling": "x-telemesh-visit-id"}


def on_behalf_of_caller() -> list[tuple[str, str]]:
    """Metadata that forwards the current caller's own token."""
    token = current_bearer_token()
    return [("authorization", f"Bearer {token}")] if token else []


def _with_metadata(details: grpc.aio.ClientCallDetails, extra: list[tuple[str, str]]) -> Any:
    metadata = list(details.metadata or [])
    present = {key for key, _ in metadata}
    metadata.extend((key, value) for key, value in extra if key not in present)
    return grpc.aio.ClientCallDetails(
        details.method,
        details.timeout,
        grpc.aio.Metadata(*metadata),
        details.credentials,
        details.wait_for_ready,
    )


def _span_attributes(method: str) -> dict[str, str]:
    service, _, name = method.lstrip("/").partition("/")
    return {"rpc.system": "grpc", "rpc.service": service, "rpc.method": name}


class _Outgoing:
    def __init__(self, clients: ServiceClients) -> None:
        self.clients = clients

    def _extra(self) -> list[tuple[str, str]]:
        carrier: dict[str, str] = {}
        propagate.inject(carrier)
        extra = list(carrier.items())
        token = self.clients.service_token()
        if token:
            extra.append(("authorization", f"Bearer {token}"))
        return extra

    async def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        method = details.method.decode() if isinstance(details.method, bytes) else details.method
        with tracer.start_as_current_span(
            method.lstrip("/"), kind=SpanKind.CLIENT, attributes=_span_attributes(method)
        ) as span:
            call = await continuation(_with_metadata(details, self._extra()), request)
            try:
                await call
            except grpc.aio.AioRpcError as error:
                span.set_attribute("rpc.grpc.status_code", error.code().value[0])
                span.set_status(Status(StatusCode.ERROR, error.code().name))
                raise
            span.set_attribute("rpc.grpc.status_code", 0)
            return call

    async def intercept_unary_stream(self, continuation: Any, details: Any, request: Any) -> Any:
        method = details.method.decode() if isinstance(details.method, bytes) else details.method
        with tracer.start_as_current_span(
            method.lstrip("/"), kind=SpanKind.CLIENT, attributes=_span_attributes(method)
        ):
            return await continuation(_with_metadata(details, self._extra()), request)


# grpc.aio files an interceptor under the first kind it is an instance of, so one object
# that is both kinds would never see server-streaming calls: one class per kind.
class _OutgoingUnary(_Outgoing, grpc.aio.UnaryUnaryClientInterceptor):
    pass


class _OutgoingStream(_Outgoing, grpc.aio.UnaryStreamClientInterceptor):
    pass


class ServiceClients:
    """Channels from service `caller` to the other services."""

    def __init__(self, settings: RuntimeSettings, caller: str) -> None:
        self.settings = settings
        self.caller = caller
        self._channels: dict[str, grpc.aio.Channel] = {}
        self._issuer = DevIssuer(settings.home) if settings.service_tokens else None
        self._token: tuple[str, float] | None = None

    def service_token(self) -> str | None:
        if self._issuer is None:
            return None
        now = time.monotonic()
        if self._token is None or self._token[1] < now:
            token = self._issuer.mint(self.caller, "service", SERVICE_TOKEN_TTL)
            self._token = (token, now + SERVICE_TOKEN_TTL / 2)
        return self._token[0]

    def channel(self, service: str) -> grpc.aio.Channel:
        if service not in self._channels:
            self._channels[service] = grpc.aio.insecure_channel(
                self.settings.address_of(service),
                options=CHANNEL_OPTIONS,
                interceptors=[_OutgoingUnary(self), _OutgoingStream(self)],
            )
        return self._channels[service]

    async def close(self) -> None:
        for channel in self._channels.values():
            await channel.close()
        self._channels.clear()
