"""A visit's trace as a waterfall: in the terminal, or as a self-contained HTML page."""

from __future__ import annotations

import html
from dataclasses import dataclass

from telemesh_tools.tracestore.store import StoredSpan

BAR_WIDTH = 40
STATUS_ERROR = 2


@dataclass(frozen=True)
class Row:
    span: StoredSpan
    depth: int
    offset_ns: int
    duration_ns: int

    @property
    def failed(self) -> bool:
        return self.span.status_code == STATUS_ERROR


def rows(spans: list[StoredSpan]) -> list[Row]:
    """Spans in tree order (children under their parent, by start time)."""
    if not spans:
        return []
    start = min(span.start_ns for span in spans)
    known = {span.span_id for span in spans}
    children: dict[str, list[StoredSpan]] = {}
    roots: list[StoredSpan] = []
    for span in sorted(spans, key=lambda s: (s.start_ns, -s.end_ns)):
        if span.parent_span_id and span.parent_span_id in known:
            children.setdefault(span.parent_span_id, []).append(span)
        else:
            roots.append(span)
    ordered: list[Row] = []

    def walk(span: StoredSpan, depth: int) -> None:
        ordered.append(Row(span, depth, span.start_ns - start, max(0, span.end_ns - span.start_ns)))
        for child in children.get(span.span_id, []):
            walk(child, depth + 1)

    for root in roots:
        walk(root, 0)
    return ordered


def _seconds(ns: int) -> str:
    seconds = ns / 1e9
    return f"{seconds * 1000:.1f}ms" if seconds < 1 else f"{seconds:.2f}s"


def _short_service(service: str) -> str:
    return service.removeprefix("telemesh-")


def text(spans: list[StoredSpan], title: str) -> str:
    ordered = rows(spans)
    if not ordered:
        return f"{title}: no spans"
    total = max(r.offset_ns + r.duration_ns for r in ordered) or 1
    name_width = min(60, max(len(r.span.name) + 2 * r.depth for r in ordered))
    lines = [
        f"{title}  ({len(ordered)} spans, {_seconds(total)})",
        f"{'service':<14} {'span':<{name_width}} {'offset':>9} {'duration':>9}  timeline",
    ]
    for row in ordered:
        begin = int(row.offset_ns / total * BAR_WIDTH)
        length = max(1, round(row.duration_ns / total * BAR_WIDTH))
        bar = " " * begin + ("x" if row.failed else "█") * min(length, BAR_WIDTH - begin)
        name = ("  " * row.depth + row.span.name)[:name_width]
        lines.append(
            f"{_short_service(row.span.service):<14} {name:<{name_width}} "
            f"{'+' + _seconds(row.offset_ns):>9} {_seconds(row.duration_ns):>9}  "
            f"|{bar:<{BAR_WIDTH}}|{' ERROR' if row.failed else ''}"
        )
    return "\n".join(lines)


_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>
body {{ font: 13px system-ui, sans-serif; margin: 24px; color: #1d2733; }}
h1 {{ font-size: 18px; }}
table {{ border-collapse: collapse; width: 100%; }}
td, th {{ padding: 3px 8px; border-bottom: 1px solid #eef1f4; text-align: left;
  white-space: nowrap; }}
td.name {{ font-family: ui-monospace, monospace; }}
td.bar {{ width: 45%; position: relative; }}
.track {{ position: relative; height: 14px; background: #f4f6f8; }}
.fill {{ position: absolute; top: 0; height: 14px; background: #2f7fd8; min-width: 2px; }}
tr.error .fill {{ background: #d8432f; }}
.svc {{ display: inline-block; padding: 0 6px; border-radius: 3px; background: #e8eef6; }}
</style></head><body>
<h1>{title}</h1>
<p>{summary}</p>
<table><tr><th>service</th><th>span</th><th>offset</th><th>duration</th><th>status</th>
<th>timeline</th></tr>
{rows}
</table></body></html>
"""


def page(spans: list[StoredSpan], title: str) -> str:
    ordered = rows(spans)
    total = max((r.offset_ns + r.duration_ns for r in ordered), default=0) or 1
    body = []
    for row in ordered:
        left = row.offset_ns / total * 100
        width = row.duration_ns / total * 100
        body.append(
            f'<tr class="{"error" if row.failed else "ok"}">'
            f'<td><span class="svc">{html.escape(_short_service(row.span.service))}</span></td>'
            f'<td class="name" style="padding-left:{8 + 16 * row.depth}px">'
            f"{html.escape(row.span.name)}</td>"
            f"<td>+{_seconds(row.offset_ns)}</td><td>{_seconds(row.duration_ns)}</td>"
            f"<td>{'ERROR' if row.failed else 'ok'}</td>"
            f'<td class="bar"><div class="track"><div class="fill" '
            f'style="left:{left:.3f}%;width:{width:.3f}%"></div></div></td></tr>'
        )
    summary = f"{len(ordered)} spans over {_seconds(total)}"
    return _PAGE.format(title=html.escape(title), summary=summary, rows="\n".join(body))
