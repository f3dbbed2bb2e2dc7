"""Errors as Telemesh sends them, decoded: every failure is a gRPC status whose
`grpc-status-details-bin` trailer holds a `google.rpc.Status` with an `ErrorInfo` (a
stable `reason`, domain `telemesh.dev`) and, for bad input, `BadRequest` field violations.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import grpc
from google.rpc import error_details_pb2, status_pb2

DETAILS_KEY = "grpc-status-details-bin"


@dataclass(frozen=True)
class FieldViolation:
    """One bad field of a request: its path (`valid_until`) and what is wrong with it."""

    field: str
    description: str


@dataclass(eq=False)
class TelemeshError(Exception):
    """A failed call: the status code and message, and the details the service sent.

    `reason` is the `ErrorInfo` reason (`PARTNER_SCOPE`, `CONSENT_NOT_FOUND`, ...); it is
    empty when the status carried none (for example the edge's own `UNAUTHENTICATED`).
    """

    code: grpc.StatusCode
    message: str
    reason: str = ""
    domain: str = ""
    metadata: dict[str, str] = field(default_factory=dict)
    field_violations: tuple[FieldViolation, ...] = ()

    def __post_init__(self) -> None:
        super().__init__(str(self))

    def __str__(self) -> str:
        reason = f" {self.reason}" if self.reason else ""
        return f"{self.code.name}{reason}: {self.message}"

    @classmethod
    def from_call(cls, call: grpc.Call) -> TelemeshError:
        """Decodes a finished call's status and its `google.rpc.Status` details."""
        raw = next((v for k, v in call.trailing_metadata() or () if k == DETAILS_KEY), None)
        reason, domain, metadata, violations = "", "", {}, []
        for detail in status_pb2.Status.FromString(raw).details if isinstance(raw, bytes) else ():
            if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
                info = error_details_pb2.ErrorInfo()
                detail.Unpack(info)
                reason, domain = str(info.reason), str(info.domain)
                metadata = {str(key): str(value) for key, value in info.metadata.items()}
            elif detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
                bad = error_details_pb2.BadRequest()
                detail.Unpack(bad)
                violations += [
                    FieldViolation(str(v.field), str(v.description)) for v in bad.field_violations
                ]
        return cls(call.code(), call.details() or "", reason, domain, metadata, tuple(violations))
