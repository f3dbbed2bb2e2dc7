"""`telemesh trace VISIT_ID`: the visit's trace as a waterfall (text, or `--html FILE`).

One line per call (the edge, sidecar, service and database spans of each call grouped;
`--all` lists them), idle time collapsed into one marked line, the set-up's critical path
marked, errors first. See telemesh_tools.tracestore.view.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from telemesh.config import RuntimeSettings, load
from telemesh_tools.tracestore.receiver import ReceiverSettings, store_path
from telemesh_tools.tracestore.store import SpanStore, StoredSpan
from telemesh_tools.tracestore.waterfall import page, text


def add_parser(commands: Any) -> None:
    parser = commands.add_parser("trace", help="draw a visit's trace from the local trace store")
    parser.add_argument("visit_id")
    parser.add_argument("--html", type=Path, metavar="FILE", help="also write an HTML page")
    parser.add_argument(
        "--all", action="store_true", help="list every span under its call, not one line a call"
    )
    add_color_option(parser)
    parser.add_argument("--store", type=Path, help="span store (default $TELEMESH_HOME/traces.db)")
    parser.set_defaults(func=run)


def add_color_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--color",
        choices=("auto", "always", "never"),
        default="auto",
        help="colour by service (auto: when writing to a terminal)",
    )


def use_color(choice: str) -> bool:
    return choice == "always" or (choice == "auto" and sys.stdout.isatty())


def default_store(args: argparse.Namespace) -> Path:
    path: Path = args.store or store_path(load(RuntimeSettings), load(ReceiverSettings))
    return path


def visit_trace(path: Path, visit_id: str, trace_id: str = "") -> tuple[list[StoredSpan], str]:
    """A visit's trace from the span store at `path` (trace `trace_id`, else the visit's
    own: the trace with the most spans about it) and the title of its waterfall."""
    store = SpanStore(path)
    try:
        if trace_id:
            spans = store.spans(trace_id)
        else:
            traces = store.traces_of_visit(visit_id)
            spans = max((store.spans(t) for t in traces), key=len, default=[])
    finally:
        store.close()
    return spans, f"visit {visit_id}  trace {trace_id or (spans[0].trace_id if spans else '')}"


def run(args: argparse.Namespace) -> int:
    path = default_store(args)
    if not path.exists():
        print(f"no trace store at {path}: is `telemesh up` running?", file=sys.stderr)
        return 1
    spans, title = visit_trace(path, args.visit_id)
    if not spans:
        print(f"no spans for visit {args.visit_id}", file=sys.stderr)
        return 1
    print(text(spans, title, expand=args.all, color=use_color(args.color)))
    if args.html:
        args.html.write_text(page(spans, title))
        print(f"\nwrote {args.html}")
    return 0
