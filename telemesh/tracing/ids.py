"""Span ids that a caller may fix in advance.

A visit's root span is recorded when the visit completes, yet every span of the visit
names it as parent from booking on: its ids are chosen at booking and handed to the
SDK here when the span is finally made.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from opentelemetry.sdk.trace.id_generator import RandomIdGenerator

_preset: ContextVar[tuple[int, int] | None] = ContextVar("telemesh_preset_ids", default=None)


class PresetIdGenerator(RandomIdGenerator):
    """Random ids, except inside `preset_ids()`."""

    def generate_trace_id(self) -> int:
        preset = _preset.get()
        return preset[0] if preset else super().generate_trace_id()

    def generate_span_id(self) -> int:
        preset = _preset.get()
        return preset[1] if preset else super().generate_span_id()


@contextmanager
def preset_ids(trace_id: int, span_id: int) -> Iterator[None]:
    token = _preset.set((trace_id, span_id))
    try:
        yield
    finally:
        _preset.reset(token)
