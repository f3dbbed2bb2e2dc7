"""The client: one channel to the Telemesh edge and the four services' stubs on it.

Every unary call gets the bearer token, a deadline (the call's `timeout`, else the
client's), the caller's `traceparent` (per call in `metadata`, else from the client's
`traceparent` function), retries on UNAVAILABLE when it is idempotent (see `retry`), and
fails with `TelemeshError`. Streams get the token and `traceparent` only.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, TypeVar
from urllib.parse import urlsplit

import grpc

from telemesh.billing.v1 import billing_pb2_grpc
from telemesh.consent.v1 import consent_pb2_grpc
from telemesh.session.v1 import session_pb2_grpc
from telemesh.signaling.v1 import signaling_pb2_grpc
from telemesh_client.errors import TelemeshError
from telemesh_client.retry import NO_RETRY, Retry, is_idempotent

if TYPE_CHECKING:
    from grpc import _CallFuture, _CallIterator

Req = TypeVar("Req")
Resp = TypeVar("Resp")
Metadata = tuple[tuple[str, str | bytes], ...]
DEFAULT_RETRY = Retry()


def edge_target(edge: str) -> str:
    """`https://host[:port]` (or `host:port`) as a gRPC target; the edge speaks only TLS."""
    if "://" not in edge:
        return edge
    url = urlsplit(edge)
    if url.scheme != "https" or not url.hostname:
        raise ValueError(f"expected https://HOST[:PORT] for the edge, got {edge!r}")
    return url.netloc if url.port else f"{url.netloc}:443"


@dataclass
class _Details(grpc.ClientCallDetails):
    method: str
    timeout: float | None
    metadata: Metadata | None
    credentials: grpc.CallCredentials | None
    wait_for_ready: bool | None
    compression: grpc.Compression | None


@dataclass
class _Calls(grpc.UnaryUnaryClientInterceptor, grpc.UnaryStreamClientInterceptor):
    token: Callable[[], str]
    timeout: float
    retry: Retry
    traceparent: Callable[[], str | None] | None

    def _details(self, details: grpc.ClientCallDetails, timeout: float | None) -> _Details:
        metadata = list(details.metadata or ())
        keys = {key for key, _ in metadata}
        if "authorization" not in keys:
            metadata.append(("authorization", f"Bearer {self.token()}"))
        traceparent = self.traceparent() if self.traceparent else None
        if traceparent and "traceparent" not in keys:
            metadata.append(("traceparent", traceparent))
        return _Details(
            details.method,
            timeout,
            tuple(metadata),
            details.credentials,
            details.wait_for_ready,
            details.compression,
        )

    def intercept_unary_unary(
        self,
        continuation: Callable[[grpc.ClientCallDetails, Req], _CallFuture[Resp]],
        client_call_details: grpc.ClientCallDetails,
        request: Req,
    ) -> _CallFuture[Resp]:
        retry = self.retry if is_idempotent(client_call_details.method, request) else NO_RETRY
        timeout = client_call_details.timeout
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        attempt = 1
        while True:
            details = self._details(client_call_details, deadline - time.monotonic())
            call = continuation(details, request)
            error = call.exception()
            if error is None:
                return call
            unavailable = (
                isinstance(error, grpc.Call) and error.code() == grpc.StatusCode.UNAVAILABLE
            )
            if not unavailable or attempt >= retry.attempts:
                break
            pause = retry.backoff(attempt)
            if time.monotonic() + pause >= deadline:
                break
            time.sleep(pause)
            attempt += 1
        if isinstance(error, grpc.Call):
            raise TelemeshError.from_call(error) from error
        raise error

    def intercept_unary_stream(
        self,
        continuation: Callable[[grpc.ClientCallDetails, Req], _CallIterator[Resp]],
        client_call_details: grpc.ClientCallDetails,
        request: Req,
    ) -> _CallIterator[Resp]:
        return continuation(
            self._details(client_call_details, client_call_details.timeout), request
        )


class TelemeshClient:
    """The Telemesh services through one channel (usually `connect()`ed to the edge).

    `token` is the bearer token, or a function that returns a fresh one for each call.
    `timeout` is the deadline in seconds of a unary call that sets none (retries
    included). `traceparent` returns the W3C `traceparent` to send, or None.
    """

    def __init__(
        self,
        channel: grpc.Channel,
        *,
        token: str | Callable[[], str],
        timeout: float = 10.0,
        retry: Retry = DEFAULT_RETRY,
        traceparent: Callable[[], str | None] | None = None,
    ) -> None:
        token_now = token if callable(token) else lambda: token
        self.channel = channel
        calls = grpc.intercept_channel(channel, _Calls(token_now, timeout, retry, traceparent))
        self.session = session_pb2_grpc.SessionServiceStub(calls)
        self.consent = consent_pb2_grpc.ConsentServiceStub(calls)
        self.billing = billing_pb2_grpc.BillingServiceStub(calls)
        self.signaling = signaling_pb2_grpc.SignalingServiceStub(calls)

    @classmethod
    def connect(
        cls,
        edge: str,
        *,
        token: str | Callable[[], str],
        ca_file: str | Path | None = None,
        timeout: float = 10.0,
        retry: Retry = DEFAULT_RETRY,
        traceparent: Callable[[], str | None] | None = None,
    ) -> TelemeshClient:
        """A TLS channel to the edge (`https://host:port`), trusting `ca_file` (PEM) or,
        without one, the system's roots."""
        roots = Path(ca_file).read_bytes() if ca_file is not None else None
        channel = grpc.secure_channel(edge_target(edge), grpc.ssl_channel_credentials(roots))
        return cls(channel, token=token, timeout=timeout, retry=retry, traceparent=traceparent)

    def close(self) -> None:
        self.channel.close()

    def __enter__(self) -> TelemeshClient:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
