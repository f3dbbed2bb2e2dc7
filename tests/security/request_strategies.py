"""Well-typed random requests for any RPC, derived from its protobuf descriptor.

Every field gets a value of its own type: strings, numbers at and beyond their
boundaries, open enums, nested messages, repeated fields. Fields whose names say what
they hold (`patient_id`, `visit_id`, `join_token`, dates, times ...) draw, most of the
time, from `Pools` of values that exist in the running services, so that requests get
past the first checks and reach authorization and the database.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.duration_pb2 import Duration
from google.protobuf.message import Message
from google.protobuf.message_factory import GetMessageClass
from google.protobuf.timestamp_pb2 import Timestamp
from hypothesis import strategies as st

F = FieldDescriptor
MAX_DEPTH = 3
INT_RANGES = {
    F.TYPE_INT32: (-(2**31), 2**31 - 1),
    F.TYPE_SINT32: (-(2**31), 2**31 - 1),
    F.TYPE_SFIXED32: (-(2**31), 2**31 - 1),
    F.TYPE_INT64: (-(2**63), 2**63 - 1),
    F.TYPE_SINT64: (-(2**63), 2**63 - 1),
    F.TYPE_SFIXED64: (-(2**63), 2**63 - 1),
    F.TYPE_UINT32: (0, 2**32 - 1),
    F.TYPE_FIXED32: (0, 2**32 - 1),
    F.TYPE_UINT64: (0, 2**64 - 1),
    F.TYPE_FIXED64: (0, 2**64 - 1),
}
# Digits of other scripts, which int(), str.isdigit() and `\d` accept.
FOREIGN_DIGITS = str.maketrans("0123456789", "٠١٢٣٤٥٦٧٨٩")


@dataclass
class Pools:
    """Values known to the running services, by the field names that hold them, and
    the instant timestamps are drawn around (fixed: a strategy must not change between
    draws)."""

    name: str
    now: int
    by_suffix: dict[str, list[str]] = field(default_factory=dict)

    def __repr__(self) -> str:
        return f"Pools({self.name})"

    def add(self, suffix: str, *values: str) -> None:
        self.by_suffix.setdefault(suffix, []).extend(values)

    def everything(self) -> list[str]:
        return sorted({value for values in self.by_suffix.values() for value in values})


def _integers(kind: int) -> st.SearchStrategy[int]:
    low, high = INT_RANGES[kind]
    edges = sorted(
        v for v in {low, high, -1, 0, 1, 2, 5, 100, 2**31 - 1, 2**53} if low <= v <= high
    )
    return st.one_of(st.sampled_from(edges), st.integers(0, 50), st.integers(low, high))


def _timestamp(now: int) -> st.SearchStrategy[Timestamp]:
    near = st.integers(now - 3 * 86400, now + 3 * 86400)
    seconds = st.one_of(near, near, st.integers(-(2**63), 2**63 - 1))
    nanos = st.one_of(st.just(0), st.integers(-(2**31), 2**31 - 1))
    return st.builds(Timestamp, seconds=seconds, nanos=nanos)


def _duration() -> st.SearchStrategy[Duration]:
    seconds = st.one_of(st.integers(0, 120), st.integers(-(2**63), 2**63 - 1))
    nanos = st.one_of(st.just(0), st.integers(0, 999_999_999), st.integers(-(2**31), 2**31 - 1))
    return st.builds(Duration, seconds=seconds, nanos=nanos)


def _dates() -> st.SearchStrategy[str]:
    iso = st.dates().map(lambda d: d.isoformat())
    return st.one_of(iso, iso.map(lambda s: s.translate(FOREIGN_DIGITS)), st.text(max_size=12))


def _local_times() -> st.SearchStrategy[str]:
    hhmm = st.builds(lambda h, m: f"{h:02d}:{m:02d}", st.integers(0, 25), st.integers(0, 60))
    return st.one_of(
        hhmm, hhmm.map(lambda s: s.translate(FOREIGN_DIGITS)), st.just("24:00"), st.text(max_size=6)
    )


# Strings by what the field name says (the first suffix that matches wins).
def _hinted(name: str, pools: Pools) -> st.SearchStrategy[str] | None:
    for suffix, values in pools.by_suffix.items():
        if name.endswith(suffix) and values:
            return st.one_of(st.sampled_from(values), st.sampled_from(values), st.text(max_size=20))
    if name == "request_id":
        return st.one_of(st.uuids().map(str), st.uuids().map(str), st.text(max_size=40))
    if name.endswith("date"):
        return _dates()
    if name.endswith("local_time"):
        return _local_times()
    if name == "time_zone":
        return st.sampled_from(["UTC", "Europe/Paris", "America/New_York", "Mars/Base", "../etc"])
    if name == "sdp":
        return st.one_of(st.just("v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\n"), st.text(max_size=40))
    if name.endswith("sha256"):
        return st.one_of(st.text("0123456789abcdef", min_size=64, max_size=64), st.text(max_size=8))
    if name.endswith("_id"):
        return st.one_of(st.uuids().map(str), st.text(max_size=20))
    return None


def _scalar(fd: FieldDescriptor, pools: Pools) -> st.SearchStrategy[Any]:
    if fd.type == F.TYPE_STRING:
        hinted = _hinted(fd.name, pools)
        if hinted is not None:
            return hinted
        return st.one_of(st.just(""), st.text(max_size=30), st.sampled_from(pools.everything()))
    if fd.type == F.TYPE_BYTES:
        return st.binary(max_size=32)
    if fd.type == F.TYPE_BOOL:
        return st.booleans()
    if fd.type == F.TYPE_ENUM:
        assert fd.enum_type is not None
        known = [value.number for value in fd.enum_type.values]
        return st.one_of(st.sampled_from(known), st.sampled_from([-1, 99, 2**31 - 1]))
    if fd.type == F.TYPE_DOUBLE:
        return st.floats()
    if fd.type == F.TYPE_FLOAT:
        return st.floats(width=32)
    return _integers(fd.type)


def _value(fd: FieldDescriptor, pools: Pools, depth: int) -> st.SearchStrategy[Any] | None:
    if fd.type == F.TYPE_MESSAGE:
        nested = fd.message_type
        assert nested is not None
        if nested.GetOptions().map_entry or depth >= MAX_DEPTH:
            return None
        if nested.full_name == "google.protobuf.Timestamp":
            element: st.SearchStrategy[Any] = _timestamp(pools.now)
        elif nested.full_name == "google.protobuf.Duration":
            element = _duration()
        else:
            element = messages(nested, pools, depth + 1)
    else:
        element = _scalar(fd, pools)
    if fd.is_repeated:
        return st.lists(element, max_size=3)
    return element


def _build(cls: type[Message], values: Mapping[str, Any]) -> Message:
    message = cls()
    for name, value in values.items():
        target = getattr(message, name)
        if isinstance(value, list):
            if value and isinstance(value[0], Message):
                for item in value:
                    target.add().CopyFrom(item)
            else:
                target.extend(value)
        elif isinstance(value, Message):
            target.CopyFrom(value)
        else:
            setattr(message, name, value)
    return message


def messages(descriptor: Descriptor, pools: Pools, depth: int = 0) -> st.SearchStrategy[Message]:
    """Messages of `descriptor`'s type, each field set or left unset at random."""
    fields: dict[str, st.SearchStrategy[Any]] = {}
    for fd in descriptor.fields:
        value = _value(fd, pools, depth)
        if value is not None:
            fields[fd.name] = value
    cls = GetMessageClass(descriptor)
    return st.fixed_dictionaries({}, optional=fields).map(lambda values: _build(cls, values))
