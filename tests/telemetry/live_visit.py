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
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from telemesh.identity.tokens import DevIssuer
from telemesh.telemetry import setup_telemetry
from telemesh_tools.demo.run import Progress, Summary, edge_channel_factory, play_visit, start_stack
from telemesh_tools.demo.steps import VisitSteps
from telemesh_tools.stack.process import ManagedProcess, free_port
from tests.support.harness import REPO

RULES = REPO / "ops" / "prometheus" / "rules"


def _http_ready(url: str) -> Callable[[], bool]:
    def probe() -> bool:
        try:
            with urllib.request.urlopen(url, timeout=1) as reply:
                return bool(reply.status == 200)
        except OSError:
            return False

    return probe


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


def _query(base: str, promql: str) -> list[dict[str, Any]]:
    url = f"{base}/api/v1/query?{urllib.parse.urlencode({'query': promql})}"
    with urllib.request.urlopen(url, timeout=10) as reply:
        answer = json.load(reply)
    assert answer["status"] == "success", answer
    result: list[dict[str, Any]] = answer["data"]["result"]
    return result


async def _scraping(base: str, targets: int, seconds: float = 60) -> None:
    """Waits until Prometheus has scraped every target once (it takes up its static targets
    some seconds after it is ready), so that it sees every counter start."""
    deadline = asyncio.get_running_loop().time() + seconds
    while True:
        up = await asyncio.to_thread(_query, base, "count(up == 1)")
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
        return _query(self.prometheus, promql)

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
    os.environ.setdefault("TELEMESH_ICE_LOOPBACK", "1")
    await asyncio.to_thread(home.mkdir, parents=True, exist_ok=True)
    up, endpoints = await asyncio.to_thread(start_stack, home, home / "up.log")
    prometheus: ManagedProcess | None = None
    telemetry = None
    steps: VisitSteps | None = None
    exporter_before = os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
    try:
        if scrape and shutil.which("prometheus") is not None:
            port = free_port()
            config = home / "prometheus.yml"
            config.write_text(prometheus_config(endpoints, RULES))
            base = f"http://127.0.0.1:{port}"
            prometheus = ManagedProcess(
                "prometheus",
                [
                    "prometheus",
                    f"--config.file={config}",
                    f"--storage.tsdb.path={home / 'prometheus-data'}",
                    f"--web.listen-address=127.0.0.1:{port}",
                ],
                {},
                home / "prometheus.log",
                ready=_http_ready(f"{base}/-/ready"),
            )
            await asyncio.to_thread(prometheus.start().wait_ready)
            targets = len(endpoints["services"]) * 2 + 1  # services, sidecars, the edge
            await _scraping(base, targets)
        else:
            base = ""
        os.environ["OTEL_EXPORTER_OTLP_ENDPOINT"] = str(endpoints["trace_receiver"])
        telemetry = setup_telemetry("peers")
        output: list[str] = []
        steps = VisitSteps(edge_channel_factory(endpoints), DevIssuer(home))
        summaries = [
            await play_visit(steps, Progress(output.append), call_seconds=seconds)
            for seconds in calls
        ]
        telemetry.tracer_provider.force_flush()
        yield VisitedMesh(home, endpoints, base, summaries[-1], steps, output, summaries)
    finally:
        if steps is not None:
            await steps.close()
        if telemetry is not None:
            telemetry.shutdown()
        if exporter_before is None:
            os.environ.pop("OTEL_EXPORTER_OTLP_ENDPOINT", None)
        else:
            os.environ["OTEL_EXPORTER_OTLP_ENDPOINT"] = exporter_before
        if prometheus is not None:
            prometheus.stop()
        await asyncio.to_thread(up.stop, 60)
