"""Input checks that collect every bad field before answering INVALID_ARGUMENT."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, date, datetime, timedelta

from google.protobuf.duration_pb2 import Duration
from google.protobuf.timestamp_pb2 import Timestamp

from telemesh.errors import FieldViolation, InvalidArgument

# Ids of users and records across services (a token's subject, a visit, a practice).
IDENTIFIER = re.compile(r"^[A-Za-z0-9._:@-]{1,100}$")
# The shape of an ICD-10-CM code: a letter, a digit, a letter or digit, then optionally
# a dot and one to four letters or digits (`J06.9`, `S72.001A`, `E119`).
ICD10_CM = re.compile(r"^[A-Z][0-9][A-Z0-9](\.?[A-Z0-9]{1,4})?$")
# ASCII digits only: `\d`, str.isdigit() and int() also take other scripts' digits
# (Arabic-Indic, Devanagari, fullwidth, superscripts).
ISO_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
# The largest value of a protobuf int64 field; int32's is INT32_MAX.
INT64_MAX = 2**63 - 1
INT32_MAX = 2**31 - 1


def ascii_digits(text: str) -> bool:
    """True when `text` is one or more of 0-9 and nothing else."""
    return text.isascii() and text.isdigit()


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

    def identifier(self, field: str, value: str, *, required: bool = True) -> bool:
        """An id of the shape every service shares (1-100 letters, digits, `._:@-`)."""
        if not value:
            if required:
                self.add(field, "is required")
            return False
        return self.check(
            bool(IDENTIFIER.fullmatch(value)), field, "must be 1-100 letters, digits or ._:@-"
        )

    def icd10_cm(self, field: str, code: str) -> bool:
        return self.check(
            bool(ICD10_CM.fullmatch(code)),
            field,
            "is not an ICD-10-CM code (upper case: letter, digit, letter or digit, then "
            "optionally a dot and 1 to 4 letters or digits, e.g. J06.9)",
        )

    def iso_date(self, field: str, value: str) -> date | None:
        """The date in `value` (`YYYY-MM-DD`), or None with a violation."""
        if not value:
            self.add(field, "is required (YYYY-MM-DD)")
            return None
        try:
            if not ISO_DATE.fullmatch(value):
                raise ValueError
            return date.fromisoformat(value)
        except ValueError:
            self.add(field, "must be a date YYYY-MM-DD")
            return None

    def in_range(self, field: str, value: int, low: int, high: int) -> bool:
        """`low <= value <= high`: integers that reach arithmetic, a database column or
        a protobuf field of their own are bounded before they get there."""
        return self.check(low <= value <= high, field, f"must be between {low} and {high}")

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

    def duration(
        self, field: str, value: Duration, low: timedelta, high: timedelta
    ) -> timedelta | None:
        """The span in `value` if it lies in [low, high], else None with a violation
        (checked on the raw fields: a huge one overflows timedelta)."""
        seconds = value.seconds + value.nanos / 1e9
        if not (-1e9 < value.nanos < 1e9) or not (
            low.total_seconds() <= seconds <= high.total_seconds()
        ):
            self.add(
                field, f"must be between {low.total_seconds():g} s and {high.total_seconds():g} s"
            )
            return None
        return value.ToTimedelta()

    def raise_if_any(self) -> None:
        if self.items:
            raise InvalidArgument(self.items)
