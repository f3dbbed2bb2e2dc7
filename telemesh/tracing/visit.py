"""One trace per video visit.

Booking picks the visit's trace id and root span id and stores them with the visit as a
W3C `traceparent`. Every later piece of work about the visit, in any service and in any
request, runs in a span whose parent is that root (`visit_span`), so an SRE with a visit
id sees booking, consent, check-in, signaling, the call, the end and the charge in one
waterfall. When the request itself already carries the visit's trace (clients send the
visit's `traceparent`), its server span is in the visit's trace already and the visit
span nests under it; otherwise the visit span links back to the request's span. The
root span itself is recorded at completion (`record_visit_root`), covering booking to
completion with the ids chosen at booking.

Sampling: the visit's decision is taken once, at booking, by the configured sampler,
and carried in the traceparent's flags; everything under it follows it (parent-based),
so a visit's trace is kept whole or not at all.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.sampling import Decision
from opentelemetry.trace import Link, SpanContext, SpanKind, TraceFlags

from telemesh.tracing.ids import PresetIdGenerator, preset_ids

tracer = trace.get_tracer("telemesh.visit")
ROOT_SPAN_NAME = "visit"


def _ns(instant: datetime) -> int:
    return int(instant.timestamp() * 1_000_000_000)


def new_visit_traceparent(visit_id: str) -> str:
    """A fresh trace for a visit, sampled (or not) by the configured sampler."""
    generator = PresetIdGenerator()
    trace_id = generator.generate_trace_id()
    span_id = generator.generate_span_id()
    provider = trace.get_tracer_provider()
    sampled = True
    if isinstance(provider, TracerProvider):
        result = provider.sampler.should_sample(
            None, trace_id, ROOT_SPAN_NAME, SpanKind.INTERNAL, {"telemesh.visit_id": visit_id}
        )
        sampled = result.decision == Decision.RECORD_AND_SAMPLE
    return f"00-{trace_id:032x}-{span_id:016x}-{'01' if sampled else '00'}"


@functools.lru_cache(maxsize=4096)
def visit_context(traceparent: str) -> otel_context.Context | None:
    """The context whose parent is the visit's root span (parsed once per traceparent:
    the relay path asks on every message; a context is immutable, so it is shared)."""
    if not traceparent:
        return None
    extracted = propagate.extract({"traceparent": traceparent})
    if not trace.get_current_span(extracted).get_span_context().is_valid:
        return None
    return extracted


def trace_id_of(traceparent: str) -> str:
    parts = traceparent.split("-")
    return parts[1] if len(parts) == 4 else ""


@contextmanager
def visit_span(
    traceparent: str, name: str, attributes: dict[str, Any] | None = None
) -> Iterator[trace.Span]:
    """A span about the visit, in the visit's trace, current while the block runs."""
    parent = visit_context(traceparent)
    current = trace.get_current_span().get_span_context()
    if parent is None:
        with tracer.start_as_current_span(name, attributes=attributes) as span:
            yield span
        return
    visit_trace = trace.get_current_span(parent).get_span_context().trace_id
    if current.is_valid and current.trace_id == visit_trace:
        # The request already runs in the visit's trace: nest under it.
        with tracer.start_as_current_span(name, attributes=attributes) as span:
            yield span
        return
    links = [Link(current)] if current.is_valid else []
    with tracer.start_as_current_span(
        name, context=parent, links=links, attributes=attributes
    ) as span:
        yield span


def record_visit_root(
    traceparent: str, started: datetime, ended: datetime, attributes: dict[str, Any]
) -> None:
    """Records the visit's root span, booking to completion, with the booking's ids."""
    parent = visit_context(traceparent)
    if parent is None:
        return
    ids: SpanContext = trace.get_current_span(parent).get_span_context()
    if not ids.trace_flags & TraceFlags.SAMPLED:
        return
    with preset_ids(ids.trace_id, ids.span_id):
        span = tracer.start_span(
            ROOT_SPAN_NAME,
            context=otel_context.Context(),  # a root: no parent
            kind=SpanKind.INTERNAL,
            attributes=attributes,
            start_time=_ns(started),
        )
    span.end(end_time=_ns(ended))


def record_visit_span(
    traceparent: str,
    name: str,
    start_ns: int,
    end_ns: int,
    attributes: dict[str, Any],
) -> None:
    """A finished piece of the visit measured after the fact (a call's set-up time)."""
    parent = visit_context(traceparent)
    if parent is None:
        return
    span = tracer.start_span(name, context=parent, attributes=attributes, start_time=start_ns)
    span.end(end_time=end_ns)
