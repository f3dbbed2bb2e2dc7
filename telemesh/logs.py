"""Structured JSON logs on stderr, one object a line, carrying the trace and span ids.

Callers pass identifiers only (`visit_id=...`); request bodies, SDP and PHI are never
logged. `log()` is the one way services write an event.
"""

from __future__ import annotations

import json
import logging
import sys
import time
import traceback
from typing import Any

from opentelemetry import trace

_SERVICE = "telemesh"


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "service": _SERVICE,
            "logger": record.name,
            "message": record.getMessage(),
        }
        span = trace.get_current_span().get_span_context()
        if span.is_valid:
            entry["trace_id"] = format(span.trace_id, "032x")
            entry["span_id"] = format(span.span_id, "016x")
        entry.update(getattr(record, "fields", {}))
        if record.exc_info and record.exc_info[0] is not None:
            # The exception type and where it happened; its message may quote data.
            entry["error.type"] = record.exc_info[0].__name__
            entry["error.stack"] = _stack(record.exc_info[2])
        return json.dumps(entry, default=str)


def _stack(tb: Any) -> str:
    """Where it failed: the project's own frames, and the innermost library frame."""
    frames = traceback.extract_tb(tb)
    own = [f for f in frames if "site-packages" not in f.filename]
    chosen = own + frames[-1:] if frames and frames[-1] not in own else own
    return "".join(traceback.format_list(chosen))


def setup_logging(service: str, level: str = "INFO") -> None:
    """Routes every logger to JSON lines on stderr (call once per process)."""
    global _SERVICE
    _SERVICE = service
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # Libraries that log request contents or connection details stay quiet.
    for noisy in ("aiortc", "aioice", "sqlalchemy.engine", "alembic", "grpc"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def log(logger: logging.Logger, level: int, message: str, **fields: Any) -> None:
    """Writes one event with identifier fields."""
    logger.log(level, message, extra={"fields": fields})
