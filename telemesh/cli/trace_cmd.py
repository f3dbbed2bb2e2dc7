"""`telemesh trace VISIT_ID`: the visit's trace as a waterfall (text, or `--html FILE`)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from telemesh.config import RuntimeSettings, load
from telemesh.tracestore.receiver import ReceiverSettings, store_path
from telemesh.tracestore.store import SpanStore
from telemesh.tracestore.waterfall import page, text


def add_parser(commands: Any) -> None:
    parser = commands.add_parser("trace", help="draw a visit's trace from the local trace store")
    parser.add_argument("visit_id")
    parser.add_argument("--html", type=Path, metavar="FILE", help="also write an HTML page")
    parser.add_argument("--store", type=Path, help="span store (default $TELEMESH_HOME/traces.db)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    path = args.store or store_path(load(RuntimeSettings), load(ReceiverSettings))
    if not path.exists():
        print(f"no trace store at {path}: is `telemesh up` running?", file=sys.stderr)
        return 1
    store = SpanStore(path)
    try:
        traces = store.traces_of_visit(args.visit_id)
        if not traces:
            print(f"no spans for visit {args.visit_id}", file=sys.stderr)
            return 1
        # The visit's own trace is the one with the most spans about it.
        spans = max((store.spans(t) for t in traces), key=len)
    finally:
        store.close()
    title = f"visit {args.visit_id}  trace {spans[0].trace_id}"
    print(text(spans, title))
    if args.html:
        args.html.write_text(page(spans, title))
        print(f"\nwrote {args.html}")
    return 0
