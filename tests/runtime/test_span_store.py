"""The local span store under concurrent exports, and its redaction."""

from __future__ import annotations

import threading
from pathlib import Path

from opentelemetry.proto.collector.trace.v1 import trace_service_pb2

from telemesh_tools.tracestore.store import SpanStore


def _export(
    n: int, attributes: dict[str, str] | None = None
) -> trace_service_pb2.ExportTraceServiceRequest:
    request = trace_service_pb2.ExportTraceServiceRequest()
    span = request.resource_spans.add().scope_spans.add().spans.add()
    span.trace_id = n.to_bytes(16, "big")
    span.span_id = n.to_bytes(8, "big")
    span.name = "work"
    for key, value in (attributes or {}).items():
        added = span.attributes.add(key=key)
        added.value.string_value = value
    return request


def test_concurrent_exports_are_all_stored(tmp_path: Path) -> None:
    """The receiver stores exports on worker threads, several at once."""
    store = SpanStore(tmp_path / "traces.db")
    errors: list[Exception] = []

    def export(first: int) -> None:
        try:
            for n in range(first, first + 100):
                store.add(_export(n))
        except Exception as error:
            errors.append(error)

    threads = [threading.Thread(target=export, args=(1 + 1000 * k,)) for k in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(store.all_spans()) == 600


def test_addresses_and_sdp_are_not_stored(tmp_path: Path) -> None:
    store = SpanStore(tmp_path / "traces.db")
    store.add(
        _export(
            7,
            {
                "peer.address": "10.1.2.3:443",
                "upstream_address": "unix:/run/x.sock",
                "note": "from 192.168.0.9",
                "sdp": "v=0\no=- 1 1 IN IP4 0.0.0.0",
                "telemesh.visit_id": "v-1",
            },
        )
    )
    (span,) = store.all_spans()
    assert span.attributes == {"telemesh.visit_id": "v-1"}
