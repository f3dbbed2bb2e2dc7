"""Prometheus in the tests: a real one (Debian's, installed by make setup) started on a
config of the test's own and asked PromQL over its HTTP API, and a service's /metrics
endpoint read as Prometheus reads it."""

from __future__ import annotations

import json
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from telemesh_tools.stack.process import ManagedProcess, free_port


def http_ready(url: str) -> Callable[[], bool]:
    """A readiness probe: `url` answers 200."""

    def probe() -> bool:
        try:
            with urllib.request.urlopen(url, timeout=1) as reply:
                return bool(reply.status == 200)
        except OSError:
            return False

    return probe


def prometheus(home: Path, config: str) -> tuple[ManagedProcess, str]:
    """A Prometheus on a free port with `config` (YAML) and its data in `home`, not yet
    started, and its base URL."""
    port = free_port()
    path = home / "prometheus.yml"
    path.write_text(config)
    base = f"http://127.0.0.1:{port}"
    process = ManagedProcess(
        "prometheus",
        [
            "prometheus",
            f"--config.file={path}",
            f"--storage.tsdb.path={home / 'prometheus-data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        {},
        home / "prometheus.log",
        ready=http_ready(f"{base}/-/ready"),
    )
    return process, base


def query(base: str, promql: str) -> list[dict[str, Any]]:
    """The instant vector `promql` gives now."""
    url = f"{base}/api/v1/query?{urllib.parse.urlencode({'query': promql})}"
    with urllib.request.urlopen(url, timeout=10) as reply:
        answer = json.load(reply)
    assert answer["status"] == "success", answer
    result: list[dict[str, Any]] = answer["data"]["result"]
    return result


def scrape(url: str) -> list[Sample]:
    """Every sample a service's /metrics endpoint exposes now, as Prometheus reads it."""
    with urllib.request.urlopen(url, timeout=5) as reply:
        exposition: str = reply.read().decode()
    return [
        sample for family in text_string_to_metric_families(exposition) for sample in family.samples
    ]


def total(url: str, name: str, **labels: str) -> float:
    """The sum of the samples `name` at `url` whose labels include `labels`."""
    return sum(
        sample.value
        for sample in scrape(url)
        if sample.name == name and labels.items() <= sample.labels.items()
    )
