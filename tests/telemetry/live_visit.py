"""One visit through the whole local mesh, with a real Prometheus scraping it (helper of the
dashboard and trace view tests; not a test module).

`visited_mesh` runs `telemesh up` in a fresh home, starts Debian's Prometheus against every
service's endpoint and every Envoy's admin port (job names as in
ops/prometheus/prometheus.yml, rules of ops/prometheus/rules loaded), plays the demo's
visit (or several) with short calls, and yields while everything still runs; everything is stopped
when the context ends.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import urllib.parse
import urllib.request
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

from telemesh.identity.tokens import DevIssuer
from telemesh.tracing.ids import PresetIdGenerator
from telemesh_tools.demo.run import Progress, Summary, edge_channel_factory, play_visit, start_stack
from telemesh_tools.demo.steps import VisitSteps
from telemesh_tools.stack.process import ManagedProcess
from tests.support.harness import REPO
from tests.support.prometheus import prometheus as start_prometheus
from tests.support.prometheus import query

RULES = REPO / "ops" / "prometheus" / "rules"


class _Peers(SpanProcessor):
    """The test process's spans (the demo's peers report theirs into the visit's trace) go
    to the current mesh's trace receiver. OpenTelemetry takes one global tracer provider
    per process, so this one forwarder is added to it once and pointed at each mesh in
    turn (`setup_telemetry` would install a provider only the first time)."""

    def __init__(self) -> None:
        self.to: SpanProcessor | None = None

    def on_start(self, span: Span, parent_context: otel_context.Context | None = None) -> None:
        if self.to is not None:
            self.to.on_start(span, parent_context)

    def on_end(self, span: ReadableSpan) -> None:
        if self.to is not None:
            self.to.on_end(span)

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self.to.force_flush(timeout_millis) if self.to is not None else True


_peers = _Peers()


def _report_peers_to(endpoint: str) -> BatchSpanProcessor:
    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        provider = TracerProvider(
            resource=Resource.create(
                {"service.name": "telemesh-peers", "service.namespace": "telemesh"}
            ),
            id_generator=PresetIdGenerator(),
        )
        trace.set_tracer_provider(provider)
    if not getattr(provider, "_telemesh_test_peers", False):
        provider.add_span_processor(_peers)
        provider._telemesh_test_peers = True  # type: ignore[attr-defined]
    processor = BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint, insecure=True))
    _peers.to = processor
    return processor


def _target(url: str) -> str:
    return urllib.parse.urlsplit(url).netloc


def prometheus_config(endpoints: dict[str, Any], rules: Path) -> str:
    """The shape of ops/prometheus/prometheus.yml, with this stack's ports."""
    jobs: list[dict[str, Any]] = [
        {
            "job_name": f"telemesh-{name}",
            "static_configs": [{"targets": [_target(service["metrics"])]}],
        }
        for name, service in endpoints["services"].items()
    ]
    jobs.append(
        {
            "job_name": "telemesh-envoy",
            "metrics_path": "/stats/prometheus",
            "static_configs": [
                {
                    "targets": [
                        _target(s["sidecar_admin"]) for s in endpoints["services"].values()
                    ],
                    "labels": {"role": "sidecar"},
                },
                {"targets": [_target(endpoints["edge"]["admin"])], "labels": {"role": "edge"}},
            ],
        }
    )
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(rules / "*.yaml")],
        "scrape_configs": jobs,
    }
    return json.dumps(config, indent=2)  # YAML is a superset of JSON


async def _scraping(base: str, targets: int, seconds: float = 60) -> None:
    """Waits until Prometheus has scraped every target once (it takes up its static targets
    some seconds after it is ready), so that it sees every counter start."""
    deadline = asyncio.get_running_loop().time() + seconds
    while True:
        up = await asyncio.to_thread(query, base, "count(up == 1)")
        if up and int(up[0]["value"][1]) >= targets:
            return
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError(f"Prometheus did not scrape all {targets} targets: {up}")
        await asyncio.sleep(0.5)


@dataclass
class VisitedMesh:
    home: Path
    endpoints: dict[str, Any]
    prometheus: str  # base URL
    summary: Summary
    steps: VisitSteps
    output: list[str] = field(default_factory=list)
    summaries: list[Summary] = field(default_factory=list)

    def query(self, promql: str) -> list[dict[str, Any]]:
        return query(self.prometheus, promql)

    @property
    def traces(self) -> Path:
        return self.home / "traces.db"


@asynccontextmanager
async def visited_mesh(
    home: Path, calls: Sequence[float] = (3.0,), scrape: bool = True
) -> AsyncIterator[VisitedMesh]:
    """The mesh up, Prometheus scraping it (unless not `scrape`), one visit played for each
    entry of `calls` (its call's seconds of media), one after the other (see the module's
    doc); `summaries` are theirs, `summary` the last one's."""
    loopback_before = os.environ.get("TELEMESH_ICE_LOOPBACK")
    os.environ["TELEMESH_ICE_LOOPBACK"] = "1"  # the peers too: this machine may have no other
    up: ManagedProcess | None = None
    prometheus: ManagedProcess | None = None
    peers: BatchSpanProcessor | None = None
    steps: VisitSteps | None = None
    try:
        await asyncio.to_thread(home.mkdir, parents=True, exist_ok=True)
        up, endpoints = await asyncio.to_thread(start_stack, home, home / "up.log")
        if scrape and shutil.which("prometheus") is not None:
            prometheus, base = start_prometheus(home, prometheus_config(endpoints, RULES))
            await asyncio.to_thread(prometheus.start().wait_ready)
            targets = len(endpoints["services"]) * 2 + 1  # services, sidecars, the edge
            await _scraping(base, targets)
        else:
            base = ""
        peers = _report_peers_to(str(endpoints["trace_receiver"]))
        output: list[str] = []
        steps = VisitSteps(edge_channel_factory(endpoints), DevIssuer(home))
        summaries = [
            await play_visit(steps, Progress(output.append), call_seconds=seconds)
            for seconds in calls
        ]
        peers.force_flush()
        yield VisitedMesh(home, endpoints, base, summaries[-1], steps, output, summaries)
    finally:
        if steps is not None:
            await steps.close()
        if peers is not None:
            _peers.to = None
            peers.shutdown()  # type: ignore[no-untyped-call]
        if loopback_before is None:
            os.environ.pop("TELEMESH_ICE_LOOPBACK", None)
        else:
            os.environ["TELEMESH_ICE_LOOPBACK"] = loopback_before
        if prometheus is not None:
            prometheus.stop()
        if up is not None:
            await asyncio.to_thread(up.stop, 60)
