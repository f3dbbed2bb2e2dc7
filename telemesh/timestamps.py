"""Instants on the wire: `google.protobuf.Timestamp`, always UTC."""

from __future__ import annotations

from datetime import UTC, datetime

from google.protobuf.timestamp_pb2 import Timestamp


def timestamp(instant: datetime) -> Timestamp:
    """The Timestamp of an instant (a naive one is taken as UTC, as protobuf does)."""
    stamp = Timestamp()
    stamp.FromDatetime(instant.astimezone(UTC) if instant.tzinfo else instant)
    return stamp
