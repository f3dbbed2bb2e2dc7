"""PHI handling driven by the contract: fields marked `(telemesh.common.v1.phi)`.

Logs and spans never carry those fields. Instead of a hand-kept list, the mark in the
proto decides, so a new PHI field is dropped everywhere the moment it is marked.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message

from telemesh.common.v1 import options_pb2


def is_phi(field: FieldDescriptor) -> bool:
    return bool(field.GetOptions().Extensions[options_pb2.phi])


@cache
def phi_paths(descriptor: Descriptor) -> frozenset[str]:
    """Dotted paths of every PHI field reachable from `descriptor` (for documentation
    and tests)."""
    paths: set[str] = set()
    for field in descriptor.fields:
        if is_phi(field):
            paths.add(field.name)
        elif field.type == FieldDescriptor.TYPE_MESSAGE and field.message_type is not descriptor:
            paths.update(f"{field.name}.{p}" for p in phi_paths(field.message_type))
    return frozenset(paths)


def identifiers(message: Message, prefix: str = "", depth: int = 2) -> dict[str, str]:
    """The non-PHI `*_id` fields of `message` (nested up to `depth`), for logs and spans.

    Only identifiers leave a service in telemetry; every other field stays out.
    """
    found: dict[str, str] = {}
    for field, value in message.ListFields():
        if is_phi(field):
            continue
        if field.type == FieldDescriptor.TYPE_STRING and field.name.endswith("_id"):
            if not _is_repeated(field) and value:
                found[f"{prefix}{field.name}"] = str(value)
        elif field.type == FieldDescriptor.TYPE_MESSAGE and depth > 0 and not _is_repeated(field):
            found.update(identifiers(value, f"{prefix}{field.name}.", depth - 1))
    return found


def scrubbed(message: Message) -> dict[str, Any]:
    """The message as a dict with every PHI field replaced by `"[phi]"`."""
    result: dict[str, Any] = {}
    for field, value in message.ListFields():
        if is_phi(field):
            result[field.name] = "[phi]"
        elif field.type == FieldDescriptor.TYPE_MESSAGE:
            if _is_repeated(field):
                result[field.name] = [scrubbed(item) for item in value]
            else:
                result[field.name] = scrubbed(value)
        elif _is_repeated(field):
            result[field.name] = list(value)
        else:
            result[field.name] = value
    return result


def _is_repeated(field: FieldDescriptor) -> bool:
    return bool(field.is_repeated)
