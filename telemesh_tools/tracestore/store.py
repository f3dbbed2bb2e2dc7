"""The local trace store: spans received over OTLP, kept in SQLite, read by visit."""

from __future__ import annotations

import json
import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
from opentelemetry.proto.common.v1 import common_pb2

from telemesh.file_modes import private_file
from telemesh_tools.tracestore.redaction import keep

SCHEMA = """
create table if not exists spans (
    trace_id text not null,
    span_id text not null,
    parent_span_id text not null,
    name text not null,
    kind integer not null,
    service text not null,
    start_ns integer not null,
    end_ns integer not null,
    status_code integer not null,
    status_message text not null,
    attributes text not null,
    links text not null,
    primary key (trace_id, span_id)
);
create table if not exists span_visits (
    visit_id text not null,
    trace_id text not null,
    primary key (visit_id, trace_id)
);
"""


def _value(value: common_pb2.AnyValue) -> Any:
    kind = value.WhichOneof("value")
    if kind == "array_value":
        return [_value(v) for v in value.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: _value(kv.value) for kv in value.kvlist_value.values}
    if kind == "bytes_value":
        return value.bytes_value.hex()
    return getattr(value, kind) if kind else None


def _attributes(pairs: Any) -> dict[str, Any]:
    found = {kv.key: _value(kv.value) for kv in pairs}
    return {key: value for key, value in found.items() if keep(key, value)}


@dataclass(frozen=True)
class StoredSpan:
    trace_id: str
    span_id: str
    parent_span_id: str
    name: str
    kind: int
    service: str
    start_ns: int
    end_ns: int
    status_code: int
    status_message: str
    attributes: dict[str, Any]
    links: list[str]


class SpanStore:
    """Spans in one SQLite file (the receiver writes, `telemesh trace` reads)."""

    def __init__(self, path: Path) -> None:
        private_file(path)  # 0600 before SQLite opens it; its -wal and -shm follow
        self.conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._writing = threading.Lock()
        self.conn.execute("pragma journal_mode=wal")
        self.conn.execute("pragma synchronous=normal")  # spans are telemetry, not records
        self.conn.execute("pragma busy_timeout=5000")
        self.conn.executescript(SCHEMA)

    def close(self) -> None:
        self.conn.close()

    def add(self, request: trace_service_pb2.ExportTraceServiceRequest) -> int:
        rows = []
        visits = set()
        for resource_spans in request.resource_spans:
            resource = _attributes(resource_spans.resource.attributes)
            service = str(resource.get("service.name", "unknown"))
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    attributes = _attributes(span.attributes)
                    trace_id = span.trace_id.hex()
                    visit_id = attributes.get("telemesh.visit_id")
                    if isinstance(visit_id, str) and visit_id:
                        visits.add((visit_id, trace_id))
                    rows.append(
                        (
                            trace_id,
                            span.span_id.hex(),
                            span.parent_span_id.hex(),
                            span.name,
                            int(span.kind),
                            service,
                            span.start_time_unix_nano,
                            span.end_time_unix_nano,
                            int(span.status.code),
                            span.status.message[:200],
                            json.dumps(attributes, default=str),
                            json.dumps([link.span_id.hex() for link in span.links]),
                        )
                    )
        # Exports arrive on worker threads; one connection takes one transaction at a time.
        with self._writing, self.conn:
            self.conn.execute("begin")
            self.conn.executemany(
                "insert or replace into spans values (?,?,?,?,?,?,?,?,?,?,?,?)", rows
            )
            self.conn.executemany("insert or ignore into span_visits values (?,?)", sorted(visits))
        return len(rows)

    def traces_of_visit(self, visit_id: str) -> list[str]:
        rows = self.conn.execute(
            "select trace_id from span_visits where visit_id = ?", (visit_id,)
        ).fetchall()
        return [row[0] for row in rows]

    def spans(self, trace_id: str) -> list[StoredSpan]:
        rows = self.conn.execute(
            "select * from spans where trace_id = ? order by start_ns, end_ns desc", (trace_id,)
        ).fetchall()
        return [
            StoredSpan(
                trace_id=row[0],
                span_id=row[1],
                parent_span_id=row[2],
                name=row[3],
                kind=row[4],
                service=row[5],
                start_ns=row[6],
                end_ns=row[7],
                status_code=row[8],
                status_message=row[9],
                attributes=json.loads(row[10]),
                links=json.loads(row[11]),
            )
            for row in rows
        ]

    def all_spans(self) -> list[StoredSpan]:
        trace_ids = [r[0] for r in self.conn.execute("select distinct trace_id from spans")]
        return [span for trace_id in trace_ids for span in self.spans(trace_id)]


@dataclass(frozen=True)
class VisitTrace:
    """A visit's own trace (the one with the most spans about it), in figures."""

    visit_id: str
    trace_id: str
    spans: int
    start_ns: int
    end_ns: int
    errors: int

    @property
    def duration_ns(self) -> int:
        return self.end_ns - self.start_ns


def visit_traces(store: SpanStore) -> list[VisitTrace]:
    """Every visit in the store with its own trace's figures, the latest first."""
    rows = store.conn.execute(
        """
        select v.visit_id, s.trace_id, count(*), min(s.start_ns), max(s.end_ns),
               sum(s.status_code = 2)
        from span_visits v join spans s on s.trace_id = v.trace_id
        group by v.visit_id, s.trace_id
        """
    ).fetchall()
    best: dict[str, VisitTrace] = {}
    for visit_id, trace_id, count, start, end, errors in rows:
        found = VisitTrace(visit_id, trace_id, count, start, end, errors or 0)
        if visit_id not in best or found.spans > best[visit_id].spans:
            best[visit_id] = found
    return sorted(best.values(), key=lambda t: t.start_ns, reverse=True)
