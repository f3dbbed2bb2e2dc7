"""`make demo` from a clean clone: a whole visit, its summary, and its one trace.

One demo run (a fresh `git clone`, so `make demo` also sets everything up the way a
newcomer's machine does) serves every test here: its exit status and summary, the
visit's trace across all four services, the edge and both peers, the absence of PHI,
addresses and SDP from every span and log, and the waterfall drawn from the store and
opened in headless Chromium.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from telemesh_tools.tracestore.store import SpanStore, StoredSpan
from tests.support.harness import REPO

PHI = {
    "TELEMESH_DEMO_PATIENT_NAME": "Quenby Xylander",
    "TELEMESH_DEMO_PATIENT_BIRTH_DATE": "1961-11-29",
    "TELEMESH_DEMO_PATIENT_EMAIL": "quenby.xylander@phi-canary.example",
    "TELEMESH_DEMO_PATIENT_PHONE": "+1 555 0199 7731",
}
IPV4 = re.compile(r"\b(?:\d{1,3}\.){3}\d{1,3}\b")
SDP_LINE = re.compile(r"(v=0\\r\\n|a=candidate|a=fingerprint|candidate:\d+ \d )")
SERVICES = ("session", "signaling", "consent", "billing")


@dataclass
class DemoRun:
    clone: Path
    returncode: int
    output: str
    home: Path

    def field(self, name: str) -> str:
        match = re.search(rf"^  {name}\s+(.+)$", self.output, re.MULTILINE)
        assert match, f"no {name!r} in the summary:\n{self.output[-3000:]}"
        return match.group(1).strip()

    def spans(self) -> list[StoredSpan]:
        store = SpanStore(self.home / "traces.db")
        try:
            return store.spans(self.field("trace"))
        finally:
            store.close()

    def all_spans(self) -> list[StoredSpan]:
        store = SpanStore(self.home / "traces.db")
        try:
            return store.all_spans()
        finally:
            store.close()


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory: pytest.TempPathFactory) -> DemoRun:
    clone = tmp_path_factory.mktemp("clean") / "telemesh"
    subprocess.run(["git", "clone", "--quiet", str(REPO), str(clone)], check=True)
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("TELEMESH_", "OTEL_", "VIRTUAL_ENV"))
    }
    env.update(PHI)
    result = subprocess.run(
        ["make", "demo"], cwd=clone, env=env, capture_output=True, text=True, timeout=900
    )
    return DemoRun(
        clone, result.returncode, result.stdout + result.stderr, clone / ".telemesh" / "demo"
    )


def test_make_demo_exits_0_with_a_summary_and_leaves_nothing_running(demo_run: DemoRun) -> None:
    assert demo_run.returncode == 0, demo_run.output[-5000:]
    assert re.fullmatch(r"[0-9a-f-]{36}", demo_run.field("visit"))
    assert int(demo_run.field("connected seconds")) >= 15
    assert demo_run.field("code") in {"99202", "99203"}, "a new patient's visit, by its minutes"
    assert demo_run.field("modifiers") == "none"
    assert demo_run.field("place of service") == "10", "the patient checked in from home"
    assert re.fullmatch(r"\d+\.\d\d USD", demo_run.field("amount"))
    assert "nothing left running" in demo_run.output
    for step in (
        "start the stack",
        "books",
        "consents",
        "checks in",
        "WebRTC connects",
        "call quality",
        "completes",
        "charges",
        "stop the stack",
    ):
        assert re.search(rf"  ok  .*{step}.*\(\d+\.\d\d s\)", demo_run.output), step
    leftovers = subprocess.run(
        ["pgrep", "-f", str(demo_run.clone)], capture_output=True, text=True
    ).stdout.split()
    assert leftovers == [], "every process of the demo stopped"


def test_one_trace_holds_the_whole_visit_across_every_service(demo_run: DemoRun) -> None:
    spans = demo_run.spans()
    visit_id = demo_run.field("visit")
    by_id = {span.span_id: span for span in spans}
    services = {span.service for span in spans}
    for service in SERVICES:
        assert f"telemesh-{service}" in services, f"no span from {service}"
    assert any("edge" in s for s in services), "the edge Envoy's spans are in the trace"
    assert any("sidecar" in s for s in services), "so are the sidecars'"
    peer_roles = {
        s.attributes.get("telemesh.participant.role")
        for s in spans
        if s.name == "peer ice connected"
    }
    assert peer_roles == {"patient", "clinician"}, "both peers report into the visit's trace"
    roots = [s for s in spans if s.name == "visit"]
    assert len(roots) == 1
    assert roots[0].attributes["telemesh.visit_id"] == visit_id
    # Everything about the visit is in this trace, wherever it was recorded.
    elsewhere = [
        s
        for s in demo_run.all_spans()
        if s.attributes.get("telemesh.visit_id") == visit_id and s.trace_id != roots[0].trace_id
    ]
    assert not elsewhere, [s.name for s in elsewhere]

    def ancestors(span: StoredSpan) -> list[StoredSpan]:
        chain = []
        while span.parent_span_id in by_id:
            span = by_id[span.parent_span_id]
            chain.append(span)
        return chain

    checks = [
        s for s in spans if s.service == "telemesh-consent" and s.name.endswith("/CheckConsent")
    ]
    assert any(
        any(a.service == "telemesh-session" for a in ancestors(check)) for check in checks
    ), "session -> consent check"
    charges = [
        s
        for s in spans
        if s.service == "telemesh-billing" and s.name.endswith("/RecordVisitCompletion")
    ]
    assert charges
    assert any(any(a.name == "outbox deliver" for a in ancestors(charge)) for charge in charges), (
        "relay -> billing charge"
    )
    servers = [
        s for s in spans if s.kind == 2 and s.service.startswith("telemesh-") and "/" in s.name
    ]
    assert servers
    for server in servers:
        assert server.attributes["rpc.system"] == "grpc"
        assert (
            server.name == f"{server.attributes['rpc.service']}/{server.attributes['rpc.method']}"
        )
        assert "rpc.grpc.status_code" in server.attributes


def test_no_phi_addresses_or_sdp_in_any_span_or_log(demo_run: DemoRun) -> None:
    span_text = json.dumps(
        [[s.name, s.service, s.attributes, s.status_message] for s in demo_run.all_spans()]
    )
    logs = {path.name: path.read_text(errors="replace") for path in demo_run.home.rglob("*.log")}
    assert len(logs) >= 8, sorted(logs)
    everything = {"spans": span_text, "demo output": demo_run.output, **logs}
    for where, text in everything.items():
        for value in PHI.values():
            assert value not in text, f"PHI {value!r} in {where}"
        assert not SDP_LINE.search(text), f"SDP or an ICE candidate in {where}"
    assert not IPV4.search(span_text), "an IP address in a span"
    for service in SERVICES:  # the services' own logs (they listen on Unix sockets here)
        assert not IPV4.search(logs[f"{service}.log"]), f"an IP address in {service}.log"
    # The database holds the patient, encrypted: the canary did reach the service.
    with sqlite3.connect(demo_run.home / "session.db") as db:
        assert db.execute("select count(*) from patients").fetchone()[0] == 1


def test_the_waterfall_in_text_and_html_in_headless_chromium(
    demo_run: DemoRun, artifacts: Path, tmp_path: Path
) -> None:
    visit_id = demo_run.field("visit")
    page = tmp_path / "waterfall.html"
    env = {**os.environ, "TELEMESH_HOME": str(demo_run.home)}
    drawn = subprocess.run(
        [sys.executable, "-m", "telemesh_tools.cli.main", "trace", visit_id, "--html", str(page)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    assert f"visit {visit_id}" in drawn
    for name in ("visit book", "CheckIn", "JoinRoom", "CompleteVisit", "RecordVisitCompletion"):
        assert name in drawn, name
    html = page.read_text()
    assert "<table>" in html
    assert "RecordVisitCompletion" in html
    chromium = shutil.which("chromium")
    if chromium is None:  # scripts/debian-packages.txt names it: missing is a failure
        pytest.fail("Debian's chromium is not installed: run scripts/setup.sh (make setup)")
    screenshot = artifacts / "visit-waterfall.png"
    screenshot.unlink(missing_ok=True)
    subprocess.run(
        [
            chromium,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={tmp_path / 'chromium'}",
            "--window-size=1600,2400",
            f"--screenshot={screenshot}",
            page.as_uri(),
        ],
        capture_output=True,
        timeout=90,
        check=True,
    )
    assert screenshot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert screenshot.stat().st_size > 20_000, "a page with content, not a blank"
