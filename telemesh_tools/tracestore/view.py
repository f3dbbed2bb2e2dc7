"""A visit's trace as an SRE reads it: calls grouped, idle time collapsed, the set-up's
critical path marked, errors first.

- **Groups.** Each call the apps (or a relay) made for the visit is one group: the span
  under the visit's root (an edge span, an `outbox deliver`, a peer's report, a step of
  the visit) with everything below it: sidecars, the service, the services it called,
  their databases. 130 spans become about 25 rows.
- **Gaps.** Where nothing starts or ends for longer than `GAP_NS`, the timeline is cut:
  the stretch is drawn narrow and marked with its length; inside a call (a room's
  stream open on both sides) it is the call's media time.
- **Critical path of the set-up.** From the visit's root back from the moment both peers
  reported ICE connected (the last `peer ice connected`; else the root's end), the
  last-finishing child before the cursor, recursively (as Jaeger computes it): the chain
  of work the set-up waited on.
- **Errors.** Spans with an ERROR status, listed before everything else.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from dataclasses import dataclass, field

from telemesh_tools.tracestore.store import StoredSpan

STATUS_ERROR = 2
GAP_NS = 1_000_000_000  # an idle stretch longer than a second is collapsed
GAP_SHARE = 0.04  # the width a collapsed stretch keeps, as a share of the timeline
SETUP_DONE = "peer ice connected"
ADMISSION = "room admit"
STREAM_METHODS = ("JoinRoom", "WatchConsentChanges")


def short_service(service: str) -> str:
    return service.removeprefix("telemesh-")


def base_service(service: str) -> str:
    """`telemesh-session-sidecar` -> `session`: the service a span is about (colour)."""
    return short_service(service).removesuffix("-sidecar")


def is_proxy(service: str) -> bool:
    return service.endswith("-sidecar") or short_service(service) == "edge"


def failed(span: StoredSpan) -> bool:
    return span.status_code == STATUS_ERROR


def span_label(span: StoredSpan) -> str:
    """`telemesh.session.v1.SessionService/CheckIn` -> `SessionService/CheckIn`; an Envoy
    span by the call it carried; other spans by their name."""
    if "/" in span.name:
        return _rpc_label(span.name)
    path = span.attributes.get("grpc.path")
    if isinstance(path, str) and "/" in path:
        return f"{_rpc_label(path)} (proxy)"
    return span.name


def _rpc_label(path: str) -> str:
    service, _, method = path.strip("/").rpartition("/")
    return f"{service.rsplit('.', 1)[-1]}/{method}"


def method_of(span: StoredSpan) -> str:
    """`telemesh.session.v1.SessionService/CheckIn` -> `CheckIn`; Envoy spans by their
    `grpc.path`; other spans by their name."""
    path = str(span.attributes.get("grpc.path", "")) or span.name
    return path.rsplit("/", 1)[-1] if "/" in path else span.name


@dataclass(frozen=True)
class Member:
    span: StoredSpan
    depth: int
    critical: bool


@dataclass
class Group:
    """One call: its first span and everything under it."""

    head: StoredSpan
    label: str
    service: str  # the service that did the work (its colour)
    members: list[Member]
    start_ns: int
    end_ns: int

    @property
    def errors(self) -> list[StoredSpan]:
        return [m.span for m in self.members if failed(m.span)]

    @property
    def critical(self) -> bool:
        return any(m.critical for m in self.members)

    @property
    def services(self) -> list[str]:
        seen: dict[str, None] = {}
        for member in self.members:
            seen.setdefault(short_service(member.span.service), None)
        return list(seen)

    @property
    def duration_ns(self) -> int:
        return self.end_ns - self.start_ns

    @property
    def stream(self) -> bool:
        return any(
            "/" in m.span.name and method_of(m.span) in STREAM_METHODS for m in self.members[:3]
        )


@dataclass(frozen=True)
class Gap:
    start_ns: int
    end_ns: int
    label: str

    @property
    def duration_ns(self) -> int:
        return self.end_ns - self.start_ns


@dataclass(frozen=True)
class ErrorEntry:
    span: StoredSpan
    group: Group


@dataclass
class TraceView:
    title: str
    spans: list[StoredSpan]
    root: StoredSpan | None
    groups: list[Group]
    gaps: list[Gap]
    critical_path: list[StoredSpan]
    setup_ns: int | None  # admission to both peers connected
    start_ns: int
    end_ns: int
    errors: list[ErrorEntry] = field(default_factory=list)

    @property
    def duration_ns(self) -> int:
        return self.end_ns - self.start_ns

    @property
    def active_ns(self) -> int:
        return self.duration_ns - sum(gap.duration_ns for gap in self.gaps)

    def _kept_gap_ns(self) -> float:
        if not self.gaps:
            return 0.0
        # Each gap keeps GAP_SHARE of the drawn width, the active time the rest.
        share = min(GAP_SHARE, 0.5 / len(self.gaps))
        return self.active_ns * share / max(1e-9, 1 - share * len(self.gaps))

    def x(self, t_ns: int) -> float:
        """Where `t_ns` is on the timeline, 0..1, with the gaps drawn narrow."""
        kept = self._kept_gap_ns()
        drawn_total = self.active_ns + kept * len(self.gaps)
        if drawn_total <= 0:
            return 0.0
        position = float(t_ns - self.start_ns)
        for gap in self.gaps:
            if t_ns >= gap.end_ns:
                position -= gap.duration_ns - kept
            elif t_ns > gap.start_ns:
                inside = (t_ns - gap.start_ns) / gap.duration_ns
                position -= (t_ns - gap.start_ns) - inside * kept
        return min(1.0, max(0.0, position / drawn_total))

    def rows(self) -> list[Group | Gap]:
        """Groups and collapsed gaps in the order they happened."""
        items: list[tuple[int, int, Group | Gap]] = [(g.start_ns, 0, g) for g in self.groups]
        items += [(gap.start_ns, 1, gap) for gap in self.gaps]
        # A gap goes after the groups that started before it.
        return [item for _, _, item in sorted(items, key=lambda i: (i[0], -i[1]))]

    @property
    def slowest(self) -> Group | None:
        """The slowest step: the longest call that is not a stream open for the whole call
        (JoinRoom lasts as long as the visit's call; it is not a step that was slow)."""
        steps = [g for g in self.groups if not g.stream] or self.groups
        return max(steps, key=lambda g: g.duration_ns, default=None)


def _children(spans: list[StoredSpan]) -> tuple[dict[str, list[StoredSpan]], list[StoredSpan]]:
    known = {span.span_id for span in spans}
    children: dict[str, list[StoredSpan]] = {}
    roots: list[StoredSpan] = []
    for span in sorted(spans, key=lambda s: (s.start_ns, -s.end_ns)):
        if span.parent_span_id and span.parent_span_id in known:
            children.setdefault(span.parent_span_id, []).append(span)
        else:
            roots.append(span)
    return children, roots


def _subtree(
    head: StoredSpan, children: dict[str, list[StoredSpan]]
) -> list[tuple[StoredSpan, int]]:
    found: list[tuple[StoredSpan, int]] = []
    stack = [(head, 0)]
    while stack:
        span, depth = stack.pop()
        found.append((span, depth))
        stack.extend((child, depth + 1) for child in reversed(children.get(span.span_id, [])))
    return found


def _label(head: StoredSpan, subtree: list[tuple[StoredSpan, int]]) -> tuple[str, str]:
    """The group's name and the service that did its work."""
    servers = [
        span
        for span, _ in subtree
        if "/" in span.name and not is_proxy(span.service) and span.kind == 2
    ]
    if servers:
        served = servers[0]
        service = base_service(served.service)
        label = f"{service} {method_of(served)}"
        if head.name == "outbox deliver":
            label = f"outbox deliver: {label}"
        return label, service
    if is_proxy(head.service) and "grpc.path" in head.attributes:  # refused at the proxy
        target = str(head.attributes["grpc.path"]).split("/")[1].split(".")[1]
        return f"{target} {method_of(head)} (at the {short_service(head.service)})", target
    role = head.attributes.get("telemesh.participant.role")
    label = f"{head.name} ({role})" if isinstance(role, str) else head.name
    return label, base_service(head.service)


def _gaps(spans: list[StoredSpan], streams: list[StoredSpan]) -> list[Gap]:
    points = sorted({p for span in spans for p in (span.start_ns, span.end_ns)})
    gaps = []
    for before, after in itertools.pairwise(points):
        if after - before > GAP_NS:
            in_call = any(s.start_ns <= before and s.end_ns >= after for s in streams)
            gaps.append(Gap(before, after, "call in progress (media)" if in_call else "idle"))
    return gaps


def critical_path(
    root: StoredSpan, children: dict[str, list[StoredSpan]], until_ns: int
) -> list[StoredSpan]:
    """The spans the work up to `until_ns` waited on, from `root` down (last-finishing
    child before a moving cursor, recursively)."""
    path: list[StoredSpan] = []
    taken: set[str] = set()

    def walk(span: StoredSpan, cursor: int) -> None:
        path.append(span)
        taken.add(span.span_id)
        while True:
            candidates = [
                c
                for c in children.get(span.span_id, [])
                if c.end_ns <= cursor and c.span_id not in taken
            ]
            if not candidates:
                return
            last = max(candidates, key=lambda c: (c.end_ns, c.start_ns))
            walk(last, last.end_ns)
            cursor = last.start_ns

    walk(root, min(root.end_ns, until_ns) if until_ns else root.end_ns)
    return path


def build(spans: list[StoredSpan], title: str) -> TraceView:
    """The view of one trace's spans."""
    if not spans:
        return TraceView(title, [], None, [], [], [], None, 0, 0)
    children, roots = _children(spans)
    visit_roots = [r for r in roots if r.name == "visit"]
    root = visit_roots[0] if visit_roots else max(roots, key=lambda s: s.end_ns - s.start_ns)
    heads: list[StoredSpan] = []
    for top in roots:
        if top.name == "visit" and children.get(top.span_id):
            heads.extend(children[top.span_id])
        else:
            heads.append(top)

    connected = [s.end_ns for s in spans if s.name == SETUP_DONE]
    admitted = [s.start_ns for s in spans if s.name == ADMISSION]
    setup_end = max(connected) if connected else 0
    setup_ns = setup_end - min(admitted) if connected and admitted else None
    on_path = {s.span_id for s in critical_path(root, children, setup_end or root.end_ns)}

    groups = []
    for head in heads:
        subtree = _subtree(head, children)
        label, service = _label(head, subtree)
        groups.append(
            Group(
                head=head,
                label=label,
                service=service,
                members=[Member(s, depth, s.span_id in on_path) for s, depth in subtree],
                start_ns=min(s.start_ns for s, _ in subtree),
                end_ns=max(s.end_ns for s, _ in subtree),
            )
        )
    groups.sort(key=lambda g: (g.start_ns, -g.end_ns))
    streams = [
        s
        for s in spans
        if s.name == "room stream" or (method_of(s) in STREAM_METHODS and "/" in s.name)
    ]
    timed = [s for s in spans if s is not root]
    view = TraceView(
        title=title,
        spans=spans,
        root=root,
        groups=groups,
        gaps=_gaps(timed or spans, streams),
        critical_path=[s for s in spans if s.span_id in on_path],
        setup_ns=setup_ns,
        start_ns=min(s.start_ns for s in spans),
        end_ns=max(s.end_ns for s in spans),
    )
    group_of = {m.span.span_id: g for g in groups for m in g.members}
    view.errors = [
        ErrorEntry(span, group_of[span.span_id])
        for span in sorted(spans, key=lambda s: s.start_ns)
        if failed(span) and span.span_id in group_of
    ]
    if root is not None and failed(root) and root.span_id not in group_of:
        view.errors.insert(0, ErrorEntry(root, Group(root, root.name, "session", [], 0, 0)))
    return view


def error_count(spans: Iterable[StoredSpan]) -> int:
    return sum(1 for span in spans if failed(span))
