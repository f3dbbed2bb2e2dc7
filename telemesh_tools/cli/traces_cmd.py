"""`telemesh traces`: the recent visits in the local trace store, to find the one worth
looking at (then `telemesh trace VISIT_ID`).

One line a visit: its id, start, duration, span count, errors, slowest step (the call with
the most active time, idle time left out) and call set-up time (admission to both peers
connected). `--errors` keeps visits with error spans, `--slower-than 2s` those that took
longer.
"""

from __future__ import annotations

import argparse
import re
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from telemesh_tools.cli.trace_cmd import add_color_option, default_store, use_color
from telemesh_tools.tracestore.store import SpanStore, VisitTrace, visit_traces
from telemesh_tools.tracestore.view import build
from telemesh_tools.tracestore.waterfall import ERROR_RED, colour, seconds

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|min)?\s*$")


def duration_ns(value: str) -> int:
    """`2s`, `500ms`, `1.5` (seconds), `3m`: nanoseconds."""
    match = _DURATION.match(value)
    if not match:
        raise argparse.ArgumentTypeError(f"not a duration: {value!r} (try 2s, 500ms, 1m)")
    number, unit = float(match.group(1)), match.group(2) or "s"
    scale = {"ms": 1e6, "s": 1e9, "m": 60e9, "min": 60e9}[unit]
    return int(number * scale)


def add_parser(commands: Any) -> None:
    parser = commands.add_parser(
        "traces", help="list the recent visits in the local trace store (find the bad one)"
    )
    parser.add_argument("--errors", action="store_true", help="only visits with error spans")
    parser.add_argument(
        "--slower-than",
        type=duration_ns,
        metavar="DURATION",
        help="only visits whose trace lasted longer (2s, 500ms, 1m)",
    )
    parser.add_argument("--limit", type=int, default=20, help="at most this many (default 20)")
    add_color_option(parser)
    parser.add_argument("--store", type=Path, help="span store (default $TELEMESH_HOME/traces.db)")
    parser.set_defaults(func=run)


@dataclass(frozen=True)
class VisitLine:
    trace: VisitTrace
    slowest: str
    slowest_ns: int
    slowest_service: str
    setup_ns: int | None


def select(
    traces: list[VisitTrace], errors: bool = False, slower_than_ns: int | None = None
) -> list[VisitTrace]:
    """The visits the filters keep, in the order given."""
    return [
        t
        for t in traces
        if (not errors or t.errors > 0)
        and (slower_than_ns is None or t.duration_ns > slower_than_ns)
    ]


def lines(
    store: SpanStore, errors: bool = False, slower_than_ns: int | None = None, limit: int = 20
) -> list[VisitLine]:
    """The latest visits the filters keep, each with its slowest step and set-up time."""
    found = []
    for trace in select(visit_traces(store), errors, slower_than_ns)[:limit]:
        view = build(store.spans(trace.trace_id), trace.visit_id)
        slowest = view.slowest
        found.append(
            VisitLine(
                trace,
                slowest.label if slowest else "-",
                slowest.duration_ns if slowest else 0,
                slowest.service if slowest else "",
                view.setup_ns,
            )
        )
    return found


def table(found: list[VisitLine], color: bool = False) -> str:
    header = (
        f"{'visit':<36}  {'start (UTC)':<19}  {'duration':>9}  {'spans':>5}  {'errors':>6}  "
        f"{'set-up':>8}  slowest step"
    )
    rows = [header]
    for line in found:
        trace = line.trace
        start = datetime.fromtimestamp(trace.start_ns / 1e9, UTC).strftime("%Y-%m-%d %H:%M:%S")
        errors = f"{trace.errors:>6}"
        if color and trace.errors:
            errors = f"\x1b[1;38;5;{ERROR_RED[1]}m{errors}\x1b[0m"
        setup = seconds(line.setup_ns) if line.setup_ns is not None else "-"
        slowest = f"{line.slowest} ({seconds(line.slowest_ns)})" if line.slowest_ns else "-"
        if color and line.slowest_ns:
            code = colour(line.slowest_service)[2]
            slowest = f"\x1b[38;5;{code}m{slowest}\x1b[0m"
        rows.append(
            f"{trace.visit_id:<36}  {start:<19}  {seconds(trace.duration_ns):>9}  "
            f"{trace.spans:>5}  {errors}  {setup:>8}  {slowest}"
        )
    return "\n".join(rows)


def run(args: argparse.Namespace) -> int:
    path = default_store(args)
    if not path.exists():
        print(f"no trace store at {path}: is `telemesh up` running?", file=sys.stderr)
        return 1
    store = SpanStore(path)
    try:
        found = lines(store, args.errors, args.slower_than, args.limit)
    finally:
        store.close()
    if not found:
        print("no visit matches" if (args.errors or args.slower_than) else "no visits stored")
        return 0
    print(table(found, use_color(args.color)))
    return 0
