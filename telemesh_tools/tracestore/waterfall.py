"""A visit's trace as a waterfall: in the terminal, or as a self-contained HTML page.

Both draw `telemesh_tools.tracestore.view`: errors first, one row per call (expandable in
the page, `expand=True` in the terminal), idle stretches collapsed into one marked row,
colours by service, the set-up's critical path marked with ◆.
"""

from __future__ import annotations

import html
import itertools
import math
from collections.abc import Collection

from telemesh_tools.tracestore.store import StoredSpan
from telemesh_tools.tracestore.view import (
    Gap,
    Group,
    TraceView,
    base_service,
    build,
    failed,
    short_service,
    span_label,
)

BAR_WIDTH = 48
CRITICAL = "◆"

# One colour per service (HTML, and the terminal's 256-colour code); sidecars are drawn in
# a lighter shade of their service's, the edge and the peers in their own.
COLOURS: dict[str, tuple[str, str, int]] = {
    # service: (colour, light shade, ANSI 256 code)
    "session": ("#2f6fd0", "#9dbcf0", 33),
    "signaling": ("#8e44c9", "#cfa9ef", 134),
    "consent": ("#1f9d6b", "#92dcbc", 36),
    "billing": ("#d9822b", "#f3c28f", 172),
    "edge": ("#5d6b7a", "#5d6b7a", 245),
    "peers": ("#c0397a", "#c0397a", 168),
}
OTHER = ("#7a7a7a", "#bdbdbd", 250)
ERROR_RED = ("#d0312d", 196)


def colour(service: str) -> tuple[str, str, int]:
    return COLOURS.get(base_service(service), OTHER)


def seconds(ns: int) -> str:
    value = ns / 1e9
    return f"{value * 1000:.1f}ms" if value < 1 else f"{value:.2f}s"


def _ansi(text: str, code: int, on: bool, bold: bool = False) -> str:
    if not on:
        return text
    return f"\x1b[{'1;' if bold else ''}38;5;{code}m{text}\x1b[0m"


def _bar(
    view: TraceView, start_ns: int, end_ns: int, mark: str, code: int = 0, color: bool = False
) -> str:
    """The span's cells in `mark` (coloured `code`), collapsed stretches dotted (grey)."""
    begin = min(BAR_WIDTH - 1, int(view.x(start_ns) * BAR_WIDTH))
    end = max(begin + 1, math.ceil(view.x(end_ns) * BAR_WIDTH))
    cells = [" "] * BAR_WIDTH
    for gap in view.gaps:  # the collapsed stretches show through as dotted columns
        for i in range(
            int(view.x(gap.start_ns) * BAR_WIDTH), math.ceil(view.x(gap.end_ns) * BAR_WIDTH)
        ):
            cells[min(i, BAR_WIDTH - 1)] = "┊"
    for i in range(begin, min(end, BAR_WIDTH)):
        cells[i] = mark
    drawn = []
    for cell, run in itertools.groupby(cells):
        piece = "".join(run)
        if cell == mark:
            drawn.append(_ansi(piece, code, color))
        elif cell == "┊":
            drawn.append(_ansi(piece, 240, color))
        else:
            drawn.append(piece)
    return "".join(drawn)


def summary_line(view: TraceView) -> str:
    collapsed = sum(gap.duration_ns for gap in view.gaps)
    parts = [
        f"{len(view.spans)} spans in {len(view.groups)} calls",
        f"{seconds(view.duration_ns)}"
        + (f" ({seconds(collapsed)} idle, collapsed)" if collapsed else ""),
        f"call set-up {seconds(view.setup_ns)}" if view.setup_ns is not None else "no call",
        f"errors: {len(view.errors)}" if view.errors else "errors: none",
    ]
    return " · ".join(parts)


def text(spans: list[StoredSpan], title: str, expand: bool = False, color: bool = False) -> str:
    """The waterfall for a terminal: one line per call (`expand`: and its spans)."""
    view = build(spans, title)
    if not view.spans:
        return f"{title}: no spans"
    red = ERROR_RED[1]
    lines = [_ansi(title, 255, color, bold=True), summary_line(view)]
    if view.errors:
        lines.append(_ansi(f"ERRORS ({len(view.errors)})", red, color, bold=True))
        for entry in view.errors:
            span = entry.span
            lines.append(
                _ansi(
                    f"  x +{seconds(span.start_ns - view.start_ns):<8} "
                    f"{short_service(span.service):<18} {span.name}  "
                    f"{span.status_message or 'ERROR'}  (in: {entry.group.label})",
                    red,
                    color,
                )
            )
    lines.append(
        f"{CRITICAL} critical path of the set-up   x error   ┊ collapsed idle time"
        + ("" if expand else "   (--all lists every span)")
    )
    label_width = min(58, max(len(g.label) for g in view.groups) + 2)
    if expand:  # room for the spans' names under their call
        label_width = max(label_width, 64)
    lines.append(
        f"  {'offset':>9} {'duration':>9}  {'call':<{label_width}} {'spans':>5}  "
        f"{'timeline':<{BAR_WIDTH}}"
    )
    for row in view.rows():
        if isinstance(row, Gap):
            note = f" {seconds(row.duration_ns)} {row.label}: collapsed "
            lines.append(_ansi(f"  {note:~^{22 + label_width + 5 + BAR_WIDTH}}", 244, color))
            continue
        lines.append(_group_line(view, row, label_width, color))
        if expand:
            for member in row.members[1:] if len(row.members) > 1 else []:
                lines.append(
                    _member_line(
                        view, member.span, member.depth, member.critical, label_width, color
                    )
                )
    return "\n".join(lines)


def _group_line(view: TraceView, group: Group, label_width: int, color: bool) -> str:
    code = colour(group.service)[2]
    mark = CRITICAL if group.critical else " "
    bad = bool(group.errors)
    bar = _bar(
        view,
        group.start_ns,
        group.end_ns,
        "x" if bad else "█",
        ERROR_RED[1] if bad else code,
        color,
    )
    label = group.label[:label_width]
    line = (
        f"{_ansi(mark, 214, color, bold=True)} "
        f"{'+' + seconds(group.start_ns - view.start_ns):>9} {seconds(group.duration_ns):>9}  "
        f"{_ansi(f'{label:<{label_width}}', code, color, bold=group.critical)} "
        f"{len(group.members):>5}  |{bar}|"
    )
    return line + (_ansi(f" {len(group.errors)} ERROR", ERROR_RED[1], color) if bad else "")


def _member_line(
    view: TraceView, span: StoredSpan, depth: int, critical: bool, label_width: int, color: bool
) -> str:
    code = colour(span.service)[2]
    indent = "  " * depth
    name = f"{indent}{short_service(span.service)}: {span_label(span)}"[:label_width]
    bad = failed(span)
    bar = _bar(
        view, span.start_ns, span.end_ns, "x" if bad else "▪", ERROR_RED[1] if bad else code, color
    )
    offset = "+" + seconds(span.start_ns - view.start_ns)
    return (
        f"{_ansi(CRITICAL if critical else ' ', 214, color)} "
        f"{offset:>9} {seconds(span.end_ns - span.start_ns):>9}  "
        f"{_ansi(f'{name:<{label_width}}', code, color)} {'':>5}  "
        f"|{bar}|" + (_ansi(" ERROR", ERROR_RED[1], color) if failed(span) else "")
    )


_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>
body {{ font: 13px system-ui, sans-serif; margin: 24px; color: #1d2733; }}
h1 {{ font-size: 18px; margin-bottom: 4px; }}
.summary {{ color: #4a5561; margin: 0 0 12px; }}
table {{ border-collapse: collapse; width: 100%; }}
td, th {{ padding: 3px 8px; border-bottom: 1px solid #eef1f4; text-align: left;
  white-space: nowrap; }}
th {{ font-weight: 600; color: #4a5561; }}
table.errors {{ margin-bottom: 16px; border: 1px solid #f0b7b4; background: #fff5f4; }}
table.errors td {{ color: #8f1e1b; }}
td.name {{ font-family: ui-monospace, monospace; }}
td.bar {{ width: 48%; min-width: 520px; }}
.track {{ position: relative; height: 14px; background: #f4f6f8; }}
.fill {{ position: absolute; top: 0; height: 14px; min-width: 2px; border-radius: 2px; }}
.gapmark {{ position: absolute; top: 0; height: 14px;
  background: repeating-linear-gradient(45deg, #dfe3e8 0 3px, #f4f6f8 3px 6px); }}
tbody.call tr.head {{ cursor: pointer; }}
tbody.call tr.head:hover {{ background: #f7f9fb; }}
tbody.call tr.member {{ display: none; }}
tbody.call.open tr.member {{ display: table-row; }}
tr.member td.name {{ color: #3b4652; }}
.toggle {{ display: inline-block; width: 12px; color: #8895a2; }}
tbody.call.open .toggle {{ transform: rotate(90deg); }}
.crit {{ color: #e08a00; font-weight: 700; }}
.fill.critical {{ outline: 2px solid #e08a00; outline-offset: 1px; }}
tr.error td {{ color: #b3261e; }}
.fill.error {{ background: #d0312d !important; }}
tr.gap td {{ color: #6b7785; font-style: italic; background: #fafbfc; }}
.svc {{ display: inline-block; padding: 0 6px; border-radius: 3px; color: #fff;
  margin-right: 2px; font-size: 11px; }}
.legend span {{ margin-right: 14px; }}
button {{ font: inherit; margin: 0 0 8px; }}
</style></head><body>
<h1>{title}</h1>
<p class="summary">{summary}</p>
{errors}
<p class="legend">{legend}</p>
<button onclick="document.querySelectorAll('tbody.call').forEach(b => b.classList.add('open'))">
expand all</button>
<button onclick="document.querySelectorAll('tbody.call').forEach(b => b.classList.remove('open'))">
collapse all</button>
<table><thead><tr><th></th><th>call</th><th>services</th><th>offset</th>
<th>duration</th><th>spans</th><th>timeline</th></tr></thead>
{rows}
</table>
<script>
document.querySelectorAll('tbody.call tr.head').forEach(row =>
  row.addEventListener('click', () => row.parentElement.classList.toggle('open')));
</script>
</body></html>
"""


def _chip(service: str) -> str:
    strong, light, _ = colour(service)
    background = light if service.endswith("-sidecar") else strong
    return (
        f'<span class="svc" style="background:{background}">'
        f"{html.escape(short_service(service))}</span>"
    )


def _fill(view: TraceView, start_ns: int, end_ns: int, css: str, extra: str = "") -> str:
    left = view.x(start_ns) * 100
    width = max(0.15, (view.x(end_ns) - view.x(start_ns)) * 100)
    gaps = "".join(
        f'<div class="gapmark" style="left:{view.x(g.start_ns) * 100:.3f}%;'
        f'width:{(view.x(g.end_ns) - view.x(g.start_ns)) * 100:.3f}%"></div>'
        for g in view.gaps
    )
    return (
        f'<div class="track">{gaps}<div class="fill {extra}" '
        f'style="left:{left:.3f}%;width:{width:.3f}%;background:{css}"></div></div>'
    )


def _group_rows(view: TraceView, group: Group, open_: bool) -> str:
    strong = colour(group.service)[0]
    bad = bool(group.errors)
    head_classes = "head error" if bad else "head"
    fill_classes = " ".join(
        c for c in ("critical" if group.critical else "", "error" if bad else "") if c
    )
    services = "".join(
        _chip(s if s.startswith("telemesh-") else f"telemesh-{s}") for s in group.services
    )
    rows = [
        f'<tbody class="call{" open" if open_ else ""}" data-label="{html.escape(group.label)}" '
        f'data-critical="{int(group.critical)}" data-errors="{len(group.errors)}" '
        f'data-spans="{len(group.members)}">',
        f'<tr class="{head_classes}"><td>'
        f"{'<span class=crit>' + CRITICAL + '</span>' if group.critical else ''}</td>"
        f'<td class="name"><span class="toggle">▸</span> {html.escape(group.label)}'
        f"{' <b>ERROR</b>' if bad else ''}</td><td>{services}</td>"
        f"<td>+{seconds(group.start_ns - view.start_ns)}</td><td>{seconds(group.duration_ns)}</td>"
        f"<td>{len(group.members)}</td>"
        f'<td class="bar">{_fill(view, group.start_ns, group.end_ns, strong, fill_classes)}'
        "</td></tr>",
    ]
    for member in group.members:
        span = member.span
        strong, light, _ = colour(span.service)
        css = light if span.service.endswith("-sidecar") else strong
        classes = " ".join(
            c for c in ("critical" if member.critical else "", "error" if failed(span) else "") if c
        )
        name = span_label(span)
        rows.append(
            f'<tr class="member{" error" if failed(span) else ""}" data-span="{span.span_id}">'
            f"<td>{'<span class=crit>' + CRITICAL + '</span>' if member.critical else ''}</td>"
            f'<td class="name" style="padding-left:{24 + 14 * member.depth}px">'
            f"{html.escape(name)}{' <b>ERROR</b>' if failed(span) else ''}</td>"
            f"<td>{_chip(span.service)}</td>"
            f"<td>+{seconds(span.start_ns - view.start_ns)}</td>"
            f"<td>{seconds(span.end_ns - span.start_ns)}</td><td></td>"
            f'<td class="bar">{_fill(view, span.start_ns, span.end_ns, css, classes)}</td></tr>'
        )
    rows.append("</tbody>")
    return "\n".join(rows)


def page(
    spans: list[StoredSpan], title: str, expand: bool = False, open_calls: Collection[str] = ()
) -> str:
    """The waterfall as one HTML page (no external resources): click a call to open it.
    Calls with errors start open, and so do those labelled in `open_calls` (all: `expand`)."""
    view = build(spans, title)
    body = []
    for row in view.rows():
        if isinstance(row, Gap):
            body.append(
                f'<tbody class="gap"><tr class="gap" data-ns="{row.duration_ns}"><td>┊</td>'
                f'<td colspan="2">{seconds(row.duration_ns)} {html.escape(row.label)}: '
                f"collapsed</td><td>+{seconds(row.start_ns - view.start_ns)}</td>"
                f"<td>{seconds(row.duration_ns)}</td><td></td>"
                f'<td class="bar">{_fill(view, row.start_ns, row.end_ns, "transparent")}'
                "</td></tr></tbody>"
            )
        else:
            opened = expand or bool(row.errors) or row.label in open_calls
            body.append(_group_rows(view, row, opened))
    errors = ""
    if view.errors:
        items = "".join(
            f'<tr class="error"><td>+{seconds(e.span.start_ns - view.start_ns)}</td>'
            f"<td>{_chip(e.span.service)}</td><td class=name>{html.escape(e.span.name)}</td>"
            f"<td>{html.escape(e.span.status_message or 'ERROR')}</td>"
            f"<td>in {html.escape(e.group.label)}</td></tr>"
            for e in view.errors
        )
        errors = (
            f'<table class="errors"><tr><th colspan="5">Errors ({len(view.errors)})</th></tr>'
            f"{items}</table>"
        )
    legend = (
        f"<span><span class=crit>{CRITICAL}</span> critical path of the set-up</span>"
        "<span>▨ idle time, collapsed</span>"
        + "".join(
            f"<span>{_chip('telemesh-' + name)}</span>"
            for name in ("edge", "session", "signaling", "consent", "billing", "peers")
        )
        + "<span>(a sidecar in its service's lighter shade)</span>"
    )
    return _PAGE.format(
        title=html.escape(title),
        summary=html.escape(summary_line(view)),
        errors=errors,
        legend=legend,
        rows="\n".join(body),
    )
