"""The server interceptor every service runs: one place for what wraps each call.

For every Telemesh RPC it
- turns request bytes that do not parse into INVALID_ARGUMENT (grpc.aio would answer
  UNKNOWN),
- continues the caller's trace (W3C `traceparent`) in a SERVER span named by the RPC
  semantic conventions, with identifier attributes only,
- authenticates the caller and binds the principal for the servicer,
- maps `TelemeshError` to a rich status and anything unexpected to INTERNAL,
- writes one JSON log line per call and records the RPC metrics.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from contextvars import ContextVar
from typing import Any

import grpc
from google.protobuf.message import Message
from grpc_status import rpc_status
from opentelemetry import propagate, trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from telemesh import metrics
from telemesh.auth import Authenticator, bind, metadata_dict
from telemesh.db import unreachable
from telemesh.errors import (
    TelemeshError,
    Unauthenticated,
    Unavailable,
    Unimplemented,
    internal_status,
    invalid,
    to_status,
)
from telemesh.logs import log
from telemesh.phi import identifiers

logger = logging.getLogger("telemesh.rpc")
tracer = trace.get_tracer("telemesh.rpc")

# Prefix of the methods this interceptor wraps; health and reflection pass untouched.
TELEMESH_METHOD_PREFIX = "/telemesh."

# The RPC being served, as `/package.Service/Method`, for records that name the call
# (the access log).
_method: ContextVar[str] = ContextVar("telemesh_method", default="")


def current_method() -> str:
    return _method.get()


class _Malformed:
    """Stands in for a request whose bytes did not parse."""

    def __init__(self, error: str) -> None:
        self.error = error


def _guard(deserializer: Callable[[bytes], Any] | None) -> Callable[[bytes], Any]:
    def parse(data: bytes) -> Any:
        try:
            return deserializer(data) if deserializer else data
        except Exception as exc:  # any parse failure is the caller's bad input
            return _Malformed(type(exc).__name__)

    return parse


async def abort_with(context: grpc.aio.ServicerContext[Any, Any], status: Any) -> None:
    """Ends the call with a `google.rpc.Status` (code, message and details)."""
    grpc_status = rpc_status.to_status(status)
    await context.abort(grpc_status.code, grpc_status.details, grpc_status.trailing_metadata)


class RuntimeInterceptor(grpc.aio.ServerInterceptor):
    def __init__(self, authenticator: Authenticator) -> None:
        self.authenticator = authenticator

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Any]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Any:
        handler = await continuation(handler_call_details)
        method: str = handler_call_details.method
        if handler is None or not method.startswith(TELEMESH_METHOD_PREFIX):
            return handler
        if handler.request_streaming:  # the contract has none; refuse rather than guess
            return handler
        parse = _guard(handler.request_deserializer)
        if handler.response_streaming:
            return grpc.unary_stream_rpc_method_handler(
                self._wrap_stream(method, handler.unary_stream),
                request_deserializer=parse,
                response_serializer=handler.response_serializer,
            )
        return grpc.unary_unary_rpc_method_handler(
            self._wrap_unary(method, handler.unary_unary),
            request_deserializer=parse,
            response_serializer=handler.response_serializer,
        )

    def _wrap_unary(self, method: str, behavior: Any) -> Any:
        async def unary(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            async with self._scope(method, request, context):
                return await behavior(request, context)
            return None  # reached only when the scope aborted the call

        return unary

    def _wrap_stream(self, method: str, behavior: Any) -> Any:
        async def stream(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            async with self._scope(method, request, context):
                if inspect.isasyncgenfunction(behavior):
                    async for item in behavior(request, context):
                        yield item
                else:
                    await behavior(request, context)

        return stream

    @asynccontextmanager
    async def _scope(
        self, method: str, request: Any, context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[None]:
        metadata = metadata_dict(context.invocation_metadata())
        service_name, _, method_name = method[1:].partition("/")
        attributes: dict[str, Any] = {
            "rpc.system": "grpc",
            "rpc.service": service_name,
            "rpc.method": method_name,
        }
        if isinstance(request, Message):
            attributes.update(
                {f"telemesh.{key}": value for key, value in identifiers(request).items()}
            )
        started = time.perf_counter()
        code = grpc.StatusCode.OK
        principal_fields: dict[str, str] = {}
        with tracer.start_as_current_span(
            method[1:],
            context=propagate.extract(metadata),
            kind=SpanKind.SERVER,
            attributes=attributes,
            record_exception=False,
            set_status_on_exception=False,
        ) as span:
            try:
                if isinstance(request, _Malformed):
                    raise invalid("request", f"the request bytes do not parse ({request.error})")
                principal, bearer = self.authenticator.authenticate(metadata)
                if principal is None:
                    raise Unauthenticated("UNAUTHENTICATED", "this call needs a bearer token")
                principal_fields = {"principal.role": principal.role}
                span.set_attribute("telemesh.principal.role", principal.role)
                bind(principal, bearer)
                _method.set(method)
                yield
            except TelemeshError as error:
                code = error.code
                span.set_attribute("telemesh.error.reason", error.reason)
                await abort_with(context, to_status(error))
            except NotImplementedError:
                # The generated servicer base's answer for a method not built yet.
                code = grpc.StatusCode.UNIMPLEMENTED
                await abort_with(
                    context,
                    to_status(Unimplemented("UNIMPLEMENTED", f"{method_name} is not built yet")),
                )
            except grpc.aio.AbortError:
                code = _code_of(context)
                raise
            except BaseException as exc:
                if _is_cancellation(exc):
                    code = grpc.StatusCode.CANCELLED
                    raise
                if unreachable(exc):
                    # Retryable: a write that did commit before the cut answers its retry
                    # (same request_id) from its stored answer; the pool reconnects.
                    code = grpc.StatusCode.UNAVAILABLE
                    logger.warning(
                        "database unreachable", extra={"fields": {"rpc.method": method[1:]}}
                    )
                    lost = Unavailable("DATABASE_UNAVAILABLE", "the database is unreachable")
                    await abort_with(context, to_status(lost))
                else:
                    code = grpc.StatusCode.INTERNAL
                    logger.error(
                        "unexpected error",
                        exc_info=True,
                        extra={"fields": {"rpc.method": method[1:]}},
                    )
                    await abort_with(context, internal_status())
            finally:
                elapsed_ms = (time.perf_counter() - started) * 1000
                span.set_attribute("rpc.grpc.status_code", code.value[0])
                if code in _SERVER_ERRORS:
                    span.set_status(Status(StatusCode.ERROR, code.name))
                metrics.record_rpc(service_name, method_name, code.value[0], elapsed_ms)
                log(
                    logger,
                    logging.INFO,
                    "rpc",
                    **{
                        "rpc.service": service_name,
                        "rpc.method": method_name,
                        "rpc.grpc.status": code.name,
                        "duration_ms": round(elapsed_ms, 3),
                    },
                    **principal_fields,
                )


# Codes that mean the server failed (a span error), as opposed to a refused request.
_SERVER_ERRORS = {
    grpc.StatusCode.INTERNAL,
    grpc.StatusCode.UNKNOWN,
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.DATA_LOSS,
    grpc.StatusCode.DEADLINE_EXCEEDED,
    grpc.StatusCode.UNIMPLEMENTED,
}


def _code_of(context: grpc.aio.ServicerContext[Any, Any]) -> grpc.StatusCode:
    code = context.code()
    if isinstance(code, grpc.StatusCode):
        return code
    for candidate in grpc.StatusCode:
        if candidate.value[0] == code:
            return candidate
    return grpc.StatusCode.UNKNOWN


def _is_cancellation(exc: BaseException) -> bool:
    return isinstance(exc, asyncio.CancelledError | GeneratorExit | KeyboardInterrupt)
