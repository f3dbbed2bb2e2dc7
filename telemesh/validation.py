"""Input checks that collect every bad field before answering INVALID_ARGUMENT."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from google.protobuf.timestamp_pb2 import Timestamp

from telemesh.errors import FieldViolation, InvalidArgument


class Violations:
    """Collects field violations; `raise_if_any()` ends the call with all of them."""

    def __init__(self) -> None:
        self.items: list[FieldViolation] = []

    def add(self, field: str, description: str) -> None:
        self.items.append(FieldViolation(field, description))

    def check(self, ok: bool, field: str, description: str) -> bool:
        if not ok:
            self.add(field, description)
        return ok

    def required(self, field: str, value: object) -> bool:
        return self.check(bool(value), field, "is required")

    def uuid(self, field: str, value: str) -> bool:
        if not value:
            self.add(field, "is required (a UUID)")
            return False
        try:
            uuid.UUID(value)
        except ValueError:
            self.add(field, "must be a UUID")
            return False
        return True

    def max_length(self, field: str, value: str, limit: int) -> bool:
        return self.check(len(value) <= limit, field, f"must be at most {limit} characters")

    def timestamp(self, field: str, value: Timestamp, present: bool) -> datetime | None:
        """The instant in `value`, or None (with a violation) when it is missing."""
        if not present:
            self.add(field, "is required")
            return None
        if not (0 <= value.nanos < 1_000_000_000) or not (
            -62135596800 <= value.seconds <= 253402300799
        ):
            self.add(field, "is not a valid timestamp")
            return None
        return value.ToDatetime(tzinfo=UTC)

    def raise_if_any(self) -> None:
        if self.items:
            raise InvalidArgument(self.items)
