"""The Grafana dashboard (ops/grafana/telemesh.json): generated, current, and every panel's
PromQL answers with data from a real Prometheus scraping the mesh after two demo visits."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import math
import shutil
import sys
from types import ModuleType
from typing import Any

import pytest

from tests.support.harness import REPO
from tests.telemetry.live_visit import visited_mesh

DASHBOARD = REPO / "ops" / "grafana" / "telemesh.json"
GENERATOR = REPO / "scripts" / "grafana_dashboard.py"
# Grafana's own variables, as Grafana would put them in for a short time range.
MACROS = {"$__rate_interval": "2m", "$__range": "1h", "$__interval": "15s"}


def _generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("grafana_dashboard", GENERATOR)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def _panels() -> list[dict[str, Any]]:
    board: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return [p for p in board["panels"] if p["type"] != "row"]


def _expand(expr: str) -> str:
    for macro, value in MACROS.items():
        expr = expr.replace(macro, value)
    return expr


def test_the_checked_in_dashboard_is_what_the_generator_builds() -> None:
    assert DASHBOARD.read_text() == _generator().render(), (
        "ops/grafana/telemesh.json is stale: run .venv/bin/python scripts/grafana_dashboard.py"
    )


def test_the_dashboard_covers_funnel_quality_red_outbox_and_consent() -> None:
    board = json.loads(DASHBOARD.read_text())
    rows = [p["title"] for p in board["panels"] if p["type"] == "row"]
    assert rows == [
        "Visit funnel and SLOs",
        "Call quality",
        "RED per RPC",
        "Outbox and consent health",
        "Signaling rooms and audit chains",
    ]
    (funnel,) = [p for p in _panels() if p["title"].startswith("Visit funnel")]
    stages = [t["legendFormat"] for t in funnel["targets"]]
    assert [s.split(" (")[0] for s in stages] == [
        "booked",
        "checked in",
        "joined",
        "admitted",
        "completed",
        "billed",
    ]
    (variable,) = board["templating"]["list"]
    assert variable["type"] == "datasource"
    assert variable["query"] == "prometheus"
    for panel in _panels():
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == panel["datasource"]


@pytest.fixture(scope="module")
def answers(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[dict[str, Any]]]:
    """Every panel query's answer from Prometheus after two demo visits, by "panel/ref"."""
    if shutil.which("prometheus") is None:
        pytest.fail("Debian's prometheus is not installed: run scripts/setup.sh (make setup)")
    home = tmp_path_factory.mktemp("dashboard") / "home"

    async def run() -> dict[str, list[dict[str, Any]]]:
        async with visited_mesh(home, calls=(3.0, 3.0)) as mesh:
            # The last scrapes and a rule evaluation after the second charge.
            await asyncio.sleep(4)
            found: dict[str, list[dict[str, Any]]] = {}
            for panel in _panels():
                for target in panel["targets"]:
                    key = f"{panel['title']}/{target['legendFormat']}"
                    found[key] = await asyncio.to_thread(mesh.query, _expand(target["expr"]))
            return found

    return asyncio.run(run())


def _queries() -> list[str]:
    return [f"{p['title']}/{t['legendFormat']}" for p in _panels() for t in p["targets"]]


@pytest.mark.slow
@pytest.mark.parametrize("key", _queries())
def test_every_panel_query_returns_data(answers: dict[str, list[dict[str, Any]]], key: str) -> None:
    values = [float(series["value"][1]) for series in answers[key]]
    numbers = [v for v in values if not math.isnan(v)]
    assert numbers, f"{key}: no data ({answers[key]})"


@pytest.mark.slow
def test_the_funnel_counts_both_visits_at_every_step(
    answers: dict[str, list[dict[str, Any]]],
) -> None:
    # Prometheus sees a counter from its first scrape on, so the first visit's increments
    # may be lost to `increase`; the second visit's are seen at every step.
    for key, series in answers.items():
        if key.startswith("Visit funnel"):
            assert float(series[0]["value"][1]) >= 0.9, key
