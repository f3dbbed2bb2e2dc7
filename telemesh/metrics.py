"""The RPC and product metrics every service records (OpenTelemetry metrics API).

Instruments are created against the global meter provider, so they record nothing
until `telemesh.telemetry.setup_telemetry` installs one with its exporters.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from opentelemetry import metrics

_meter = metrics.get_meter("telemesh")


@cache
def _rpc_duration() -> Any:
    return _meter.create_histogram(
        "rpc.server.duration", unit="ms", description="Duration of inbound RPCs"
    )


@cache
def _counter(name: str, description: str) -> Any:
    return _meter.create_counter(name, description=description)


def record_rpc(service: str, method: str, status_code: int, elapsed_ms: float) -> None:
    """One inbound RPC, by the RPC semantic conventions' attributes (the gRPC status as
    its numeric code, 0 for OK)."""
    _rpc_duration().record(
        elapsed_ms,
        {
            "rpc.system": "grpc",
            "rpc.service": service,
            "rpc.method": method,
            "rpc.grpc.status_code": status_code,
        },
    )


def count(name: str, description: str, amount: int = 1, **attributes: str) -> None:
    """A product counter (`telemesh.visits.booked`, ...); identifiers never go in
    attributes, only small closed sets such as a state or a code."""
    _counter(name, description).add(amount, attributes)


@cache
def _histogram(name: str, unit: str, description: str) -> Any:
    return _meter.create_histogram(name, unit=unit, description=description)


def observe(name: str, unit: str, description: str, value: float, **attributes: str) -> None:
    """A product measurement (`telemesh.call.setup_time`, ...); attributes as for count()."""
    _histogram(name, unit, description).record(value, attributes)


@cache
def _gauge(name: str, description: str, unit: str) -> Any:
    return _meter.create_gauge(name, unit=unit, description=description)


def gauge(name: str, description: str, value: float, unit: str = "", **attributes: str) -> None:
    """A level that goes up and down (`telemesh.outbox.backlog`), set to `value`; a `unit`
    ("s") becomes the Prometheus name's suffix (`_seconds`)."""
    _gauge(name, description, unit).set(value, attributes)


@cache
def _up_down(name: str, description: str) -> Any:
    return _meter.create_up_down_counter(name, description=description)


def adjust(name: str, description: str, amount: int, **attributes: str) -> None:
    """A level kept as changes (+1, -1) by whatever holds it (`telemesh.signaling.rooms_open`):
    the changes of every holder in the process add up."""
    _up_down(name, description).add(amount, attributes)
