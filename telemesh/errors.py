"""The one error mapping: domain errors to gRPC statuses with `google.rpc` details.

Servicers raise these; the server interceptor turns them into a status with an
`ErrorInfo` (a stable `reason`) and, for bad input, `BadRequest` field violations.
Anything else that escapes a handler becomes `INTERNAL` without a stack trace.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import ClassVar

import grpc
from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

ERROR_DOMAIN = "telemesh.dev"


@dataclass(frozen=True)
class FieldViolation:
    """One bad field: its path (`visit.start_time`) and what is wrong with it."""

    field: str
    description: str


class TelemeshError(Exception):
    """Base of the errors a servicer raises; the subclass's `code` picks the status."""

    code: ClassVar[grpc.StatusCode] = grpc.StatusCode.INTERNAL

    def __init__(
        self,
        reason: str,
        message: str,
        metadata: Mapping[str, str] | None = None,
        violations: Sequence[FieldViolation] = (),
    ) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.metadata = dict(metadata or {})
        self.violations = tuple(violations)

    def __str__(self) -> str:
        return f"{self.code.name} {self.reason}: {self.message}"


class InvalidArgument(TelemeshError):
    """Bad input, with the fields that are wrong."""

    code = grpc.StatusCode.INVALID_ARGUMENT

    def __init__(self, violations: Sequence[FieldViolation], message: str = "") -> None:
        text = message or "; ".join(f"{v.field}: {v.description}" for v in violations)
        super().__init__("INVALID_ARGUMENT", text, None, violations)


def invalid(field_path: str, description: str) -> InvalidArgument:
    """A single-field InvalidArgument."""
    return InvalidArgument([FieldViolation(field_path, description)])


class NotFound(TelemeshError):
    """The named resource does not exist (or the caller may not know that it does)."""

    code = grpc.StatusCode.NOT_FOUND

    def __init__(self, resource: str, resource_id: str) -> None:
        super().__init__(
            f"{resource.upper()}_NOT_FOUND",
            f"{resource} {resource_id!r} not found",
            {"resource": resource, "id": resource_id},
        )


class AlreadyExists(TelemeshError):
    """The thing to create exists (for example a slot already taken)."""

    code = grpc.StatusCode.ALREADY_EXISTS


class FailedPrecondition(TelemeshError):
    """The resource is not in a state that allows the operation."""

    code = grpc.StatusCode.FAILED_PRECONDITION


class Aborted(TelemeshError):
    """A concurrency conflict: re-read and retry."""

    code = grpc.StatusCode.ABORTED


class PermissionDenied(TelemeshError):
    """The caller is known but may not do this."""

    code = grpc.StatusCode.PERMISSION_DENIED


class Unauthenticated(TelemeshError):
    """No valid credentials."""

    code = grpc.StatusCode.UNAUTHENTICATED


class Unavailable(TelemeshError):
    """A dependency cannot be reached; the caller may retry later."""

    code = grpc.StatusCode.UNAVAILABLE


class ResourceExhausted(TelemeshError):
    """A rate or size limit was hit."""

    code = grpc.StatusCode.RESOURCE_EXHAUSTED


class Unimplemented(TelemeshError):
    """The method is part of the contract but not built yet."""

    code = grpc.StatusCode.UNIMPLEMENTED


def _pack(message: object) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(message)  # type: ignore[arg-type]
    return packed


def to_status(error: TelemeshError) -> status_pb2.Status:
    """The `google.rpc.Status` that carries `error` to the client."""
    details = [
        _pack(
            error_details_pb2.ErrorInfo(
                reason=error.reason, domain=ERROR_DOMAIN, metadata=dict(error.metadata)
            )
        )
    ]
    if error.violations:
        details.append(
            _pack(
                error_details_pb2.BadRequest(
                    field_violations=[
                        error_details_pb2.BadRequest.FieldViolation(
                            field=v.field, description=v.description
                        )
                        for v in error.violations
                    ]
                )
            )
        )
    return status_pb2.Status(code=error.code.value[0], message=error.message, details=details)


def _details(error: grpc.aio.AioRpcError) -> list[any_pb2.Any]:
    status = rpc_status.from_call(error)
    return list(status.details) if status is not None else []


def reason_of(error: grpc.aio.AioRpcError) -> str | None:
    """The `ErrorInfo` reason a failed call carries (`to_status` read back), or None."""
    for detail in _details(error):
        info = error_details_pb2.ErrorInfo()
        if detail.Unpack(info):
            return str(info.reason)
    return None


def field_violations(error: grpc.aio.AioRpcError) -> tuple[FieldViolation, ...]:
    """The bad fields a failed call names in its `BadRequest` details, in order."""
    violations: list[FieldViolation] = []
    for detail in _details(error):
        bad = error_details_pb2.BadRequest()
        if detail.Unpack(bad):
            violations.extend(FieldViolation(v.field, v.description) for v in bad.field_violations)
    return tuple(violations)


def internal_status() -> status_pb2.Status:
    """What an unexpected failure looks like to a client: no stack trace, no detail."""
    return to_status(TelemeshError("INTERNAL", "internal error"))


def from_rpc_error(exc: grpc.aio.AioRpcError, dependency: str) -> TelemeshError:
    """Maps a failed call to another service onto this service's answer.

    A dependency that is down or slow makes this call UNAVAILABLE (callers may retry;
    gates such as consent fail closed); any other failure is INTERNAL.
    """
    code = exc.code()
    if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
        return Unavailable(
            "DEPENDENCY_UNAVAILABLE", f"{dependency} is unavailable", {"dependency": dependency}
        )
    return TelemeshError("DEPENDENCY_FAILED", f"{dependency} failed", {"dependency": dependency})
