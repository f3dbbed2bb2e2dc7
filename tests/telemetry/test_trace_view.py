"""`telemesh trace` and `telemesh traces` on real traces: two demo visits through the whole
mesh (a short call, then a longer one), their spans as the local trace store received them.

The happy visits have no error span (issue 18), so the error tests mark one real span of a
copy of the store as failed, as the billing service would record a failed charge, and
check where the views put it.
"""

from __future__ import annotations

import asyncio
import html
import itertools
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

from telemesh_tools.cli.trace_cmd import visit_trace
from telemesh_tools.cli.traces_cmd import lines, select
from telemesh_tools.tracestore.store import SpanStore, StoredSpan, visit_traces
from telemesh_tools.tracestore.view import GAP_SHARE, Gap, build, failed
from telemesh_tools.tracestore.waterfall import page, text
from tests.support.harness import REPO
from tests.telemetry.live_visit import visited_mesh

pytestmark = pytest.mark.slow

WEB = REPO / "web"
IMAGES = REPO / "docs" / "images"
ANSI = re.compile(r"\x1b\[(?:1;)?38;5;(\d+)m(.*?)\x1b\[0m", re.DOTALL)


@dataclass
class Visits:
    store: Path
    short: str  # visit ids: the short call's, then the longer call's
    long: str

    def trace(self, visit_id: str, store: Path | None = None) -> tuple[list[StoredSpan], str]:
        return visit_trace(store or self.store, visit_id)


@pytest.fixture(scope="module")
def visits(tmp_path_factory: pytest.TempPathFactory) -> Visits:
    home = tmp_path_factory.mktemp("traces") / "home"

    async def run() -> tuple[str, str]:
        async with visited_mesh(home, calls=(1.5, 3.5), scrape=False) as mesh:
            await asyncio.sleep(1.5)  # the Envoys flush their spans every half second
            return mesh.summaries[0].visit_id, mesh.summaries[1].visit_id

    short, long = asyncio.run(run())  # the stack is stopped: every span is stored
    kept = tmp_path_factory.mktemp("store") / "traces.db"
    shutil.copy(home / "traces.db", kept)
    return Visits(kept, short, long)


@pytest.fixture(scope="module")
def failed_store(visits: Visits, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the store where the longer visit's charge (billing's
    RecordVisitCompletion server span) ended in an error."""
    path = tmp_path_factory.mktemp("failed") / "traces.db"
    shutil.copy(visits.store, path)
    spans, _ = visits.trace(visits.long)
    (charge,) = [
        s
        for s in spans
        if s.service == "telemesh-billing" and s.name.endswith("/RecordVisitCompletion")
    ]
    with sqlite3.connect(path) as db:
        db.execute(
            "update spans set status_code = 2, status_message = 'INTERNAL' "
            "where trace_id = ? and span_id = ?",
            (charge.trace_id, charge.span_id),
        )
    return path


def _cli(*args: str) -> str:
    return subprocess.run(
        [sys.executable, "-m", "telemesh_tools.cli.main", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout


def test_each_call_is_one_group_of_its_edge_sidecar_service_and_database_spans(
    visits: Visits,
) -> None:
    spans, title = visits.trace(visits.long)
    view = build(spans, title)
    grouped = [m.span.span_id for g in view.groups for m in g.members]
    assert sorted(grouped) == sorted(s.span_id for s in spans if s is not view.root)
    assert len(view.groups) * 3 < len(spans), "a row stands for several spans"
    by_label = {g.label: g for g in view.groups}
    check_in = by_label["session CheckIn"]
    assert check_in.services[:3] == ["edge", "session-sidecar", "session"]
    assert any(m.span.name == "db write session.db" for m in check_in.members)
    tokens = [g for g in view.groups if g.label == "session IssueJoinToken"]
    assert any({"consent", "consent-sidecar"} <= set(g.services) for g in tokens), (
        "the first token's consent check, through both sidecars"
    )
    for label in (
        "visit book",
        "consent GrantConsent",
        "signaling JoinRoom",
        "signaling AdmitPatient",
        "session CompleteVisit",
        "outbox deliver: billing RecordVisitCompletion",
    ):
        assert label in by_label, sorted(by_label)
    assert by_label["outbox deliver: billing RecordVisitCompletion"].service == "billing"
    # One line a call in the terminal; --all adds every span under its call.
    short = _cli("trace", visits.long, "--store", str(visits.store), "--color", "never")
    full = _cli("trace", visits.long, "--store", str(visits.store), "--all", "--color", "never")
    call_lines = [line for line in short.splitlines() if line.rstrip().endswith("|")]
    assert len(call_lines) == len(view.groups)
    span_lines = [line for line in full.splitlines() if line.rstrip().endswith("|")]
    assert len(span_lines) == len(spans) - 1, "every span but the visit's root, once"
    assert "session: db write session.db" in full
    assert "session: db write session.db" not in short


def test_the_calls_media_time_is_one_collapsed_row(visits: Visits) -> None:
    spans, title = visits.trace(visits.long)
    view = build(spans, title)
    media = [gap for gap in view.gaps if gap.label == "call in progress (media)"]
    assert len(media) == 1, view.gaps
    (gap,) = media
    for span in spans:  # nothing starts or ends inside it
        assert not gap.start_ns < span.start_ns < gap.end_ns, span.name
        assert not gap.start_ns < span.end_ns < gap.end_ns, span.name
    # It sits between the set-up and the end of the call.
    rows = view.rows()
    at = rows.index(gap)
    before = [r.label for r in rows[:at] if not isinstance(r, Gap)]
    after = [r.label for r in rows[at + 1 :] if not isinstance(r, Gap)]
    assert "signaling AdmitPatient" in before
    assert "signaling ReportConnectionState" in before
    assert "signaling ReportCallQuality" in after
    assert "session CompleteVisit" in after
    # Drawn narrow: the set-up is not squashed into the first pixel any more.
    drawn = view.x(gap.end_ns) - view.x(gap.start_ns)
    assert drawn == pytest.approx(GAP_SHARE, rel=0.01)
    assert gap.duration_ns > view.active_ns, "the media time was most of the trace"
    terminal = text(spans, title)
    assert len(re.findall(r"call in progress \(media\): collapsed", terminal)) == 1
    assert page(spans, title).count('<tr class="gap"') == len(view.gaps)


def test_the_critical_path_of_the_set_up(visits: Visits) -> None:
    spans, title = visits.trace(visits.long)
    view = build(spans, title)
    path = view.critical_path
    assert view.root is not None
    assert path[0] is view.root or path[0].span_id == view.root.span_id
    connected = [s for s in spans if s.name == "peer ice connected"]
    last_connected = max(connected, key=lambda s: s.end_ns)
    assert last_connected in path, "the set-up ends when both peers are connected"
    # The root's children on the path run one after the other, the last ends the set-up.
    top = sorted(
        (s for s in path if s.parent_span_id == view.root.span_id), key=lambda s: s.start_ns
    )
    for earlier, later in itertools.pairwise(top):
        assert earlier.end_ns <= later.start_ns, (earlier.name, later.name)
    assert top[-1] is last_connected or top[-1].span_id == last_connected.span_id
    critical = [g.label for g in view.groups if g.critical]
    for step in (
        "visit book",
        "consent GrantConsent",
        "session CheckIn",
        "session IssueJoinToken",
        "signaling AdmitPatient",
    ):
        assert step in critical, critical
    for after in ("session CompleteVisit", "outbox deliver: billing RecordVisitCompletion"):
        assert after not in critical, "after the set-up"
    # Set-up time: admission to both connected, inside the trace.
    admit = min(s.start_ns for s in spans if s.name == "room admit")
    assert view.setup_ns == last_connected.end_ns - admit
    assert text(spans, title).count("◆") >= len(critical) + 1  # rows and the legend


def test_a_happy_visit_has_no_errors_and_a_failed_span_goes_to_the_top(
    visits: Visits, failed_store: Path
) -> None:
    spans, title = visits.trace(visits.long)
    happy = text(spans, title)
    assert "errors: none" in happy
    assert "ERROR" not in happy
    assert not [s.name for s in spans if failed(s)]

    spans, title = visits.trace(visits.long, failed_store)
    view = build(spans, title)
    (entry,) = view.errors
    assert entry.span.name.endswith("/RecordVisitCompletion")
    assert entry.group.label == "outbox deliver: billing RecordVisitCompletion"
    drawn = text(spans, title).splitlines()
    errors_at = next(i for i, line in enumerate(drawn) if line.startswith("ERRORS (1)"))
    first_call = next(i for i, line in enumerate(drawn) if line.rstrip().endswith("|"))
    assert errors_at < first_call, "errors come before the waterfall"
    assert "INTERNAL" in drawn[errors_at + 1]
    assert "RecordVisitCompletion" in drawn[errors_at + 1]
    drawn_page = page(spans, title)
    assert drawn_page.index('<table class="errors">') < drawn_page.index("<table>")
    assert re.search(
        r'<tbody class="call open" data-label="outbox deliver: billing '
        r'RecordVisitCompletion"[^>]*data-errors="1"',
        drawn_page,
    ), "the failed call starts open"


def test_traces_lists_recent_visits_and_filters_them(visits: Visits, failed_store: Path) -> None:
    store = SpanStore(visits.store)
    try:
        traces = visit_traces(store)
        found = lines(store)
    finally:
        store.close()
    assert [t.visit_id for t in traces] == [visits.long, visits.short], "the latest first"
    longer, shorter = traces
    assert longer.duration_ns > shorter.duration_ns, "the longer call"
    for line in found:
        assert line.setup_ns is not None
        assert line.slowest not in ("-", "signaling JoinRoom"), "a step, not the call's stream"
    assert select(traces, slower_than_ns=shorter.duration_ns) == [longer]
    assert select(traces, errors=True) == []

    listing = _cli("traces", "--store", str(visits.store), "--color", "never")
    header, *rows = listing.splitlines()
    for column in ("visit", "start (UTC)", "duration", "spans", "errors", "set-up", "slowest"):
        assert column in header
    assert [row.split()[0] for row in rows] == [visits.long, visits.short]
    threshold_ms = (shorter.duration_ns + 999_999) // 1_000_000  # rounded up
    slower = _cli(
        "traces", "--store", str(visits.store), "--slower-than", f"{threshold_ms}ms"
    ).splitlines()
    assert [row.split()[0] for row in slower[1:]] == [visits.long]
    none = _cli("traces", "--store", str(visits.store), "--errors")
    assert none.strip() == "no visit matches"
    with_errors = _cli("traces", "--store", str(failed_store), "--errors", "--color", "never")
    (row,) = with_errors.splitlines()[1:]
    assert row.split()[0] == visits.long
    assert re.search(r"\s1\s", row), "its error count"


# --- Pictures (docs/images with TELEMESH_UPDATE_IMAGES=1, else artifacts/) ---------------


def _xterm(code: int) -> str:
    """A 256-colour terminal code as CSS."""
    if code < 16:
        basic = ["#000", "#c33", "#3a3", "#cc3", "#36c", "#c3c", "#3cc", "#ccc"]
        return basic[code % 8]
    if code >= 232:
        level = 8 + (code - 232) * 10
        return f"rgb({level},{level},{level})"
    code -= 16
    steps = [0, 95, 135, 175, 215, 255]
    return f"rgb({steps[code // 36]},{steps[code // 6 % 6]},{steps[code % 6]})"


def terminal_page(sessions: list[tuple[str, str]]) -> str:
    """Commands and their ANSI-coloured output as a page that looks like the terminal."""

    def span(match: re.Match[str]) -> str:
        return f'<span style="color:{_xterm(int(match.group(1)))}">{match.group(2)}</span>'

    body = "\n".join(
        f"<span style='color:#7ee787'>$</span> {html.escape(command)}\n"
        + ANSI.sub(span, html.escape(output, quote=False))
        for command, output in sessions
    )
    return (
        "<!doctype html><meta charset=utf-8><body style='margin:0;background:#1b1f24'>"
        "<pre style='margin:0;padding:14px 18px;font:13px/1.35 DejaVu Sans Mono, monospace;"
        f"color:#d6dde5;background:#1b1f24;display:inline-block'>{body}</pre>"
    )


def test_the_page_opens_a_call_on_click_in_headless_chromium(
    visits: Visits, artifacts: Path, tmp_path: Path
) -> None:
    if shutil.which("node") is None or not (WEB / "node_modules" / "playwright-core").is_dir():
        pytest.fail("node and web/node_modules are needed: run scripts/setup.sh (make setup)")
    target = IMAGES if os.environ.get("TELEMESH_UPDATE_IMAGES") == "1" else artifacts
    target.mkdir(parents=True, exist_ok=True)
    spans, title = visits.trace(visits.long)
    trace_page = tmp_path / "trace.html"
    trace_page.write_text(page(spans, title))
    listing = _cli("traces", "--store", str(visits.store), "--color", "always")
    waterfall = text(spans, title, color=True)
    terminal = tmp_path / "terminal.html"
    terminal.write_text(
        terminal_page([("telemesh traces", listing), (f"telemesh trace {visits.long}", waterfall)])
    )
    shots = {"before": str(tmp_path / "before.png"), "after": str(target / "trace-view.png")}
    run = subprocess.run(
        [
            "node",
            str(Path(__file__).with_name("trace_page.mjs")),
            json.dumps(
                {
                    "webDir": str(WEB),
                    "page": trace_page.as_uri(),
                    "click": "consent GrantConsent",
                    "shots": shots,
                    "terminal": terminal.as_uri(),
                    "terminalShot": str(target / "trace-terminal.png"),
                    "userDataDir": str(tmp_path / "chromium"),
                }
            ),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    reply = json.loads(run.stdout.strip().splitlines()[-1])
    assert "failed" not in reply, (reply, run.stderr[-2000:])
    result = reply["result"]
    assert result["firstTable"] is None, "no errors table for a happy visit: the waterfall first"
    assert not any(row["open"] for row in result["rows"]), "every call starts closed"
    assert result["membersBefore"] == 0
    assert result["membersAfter"] >= 10, "a click shows the call's spans"
    for name in ("trace-view.png", "trace-terminal.png"):
        assert (target / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert (target / name).stat().st_size > 20_000, "a picture with content"
