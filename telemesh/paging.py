"""Paging for every List RPC: `page_size`, `page_token`, `next_page_token`.

Tokens are opaque to clients (URL-safe base64 of a small JSON cursor); one that does
not decode, or that belongs to another query, is INVALID_ARGUMENT.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from typing import Any

from telemesh.errors import invalid

DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 500


def page_size(
    requested: int, default: int = DEFAULT_PAGE_SIZE, maximum: int = MAX_PAGE_SIZE
) -> int:
    if requested < 0 or requested > maximum:
        raise invalid("page_size", f"must be between 0 and {maximum}")
    return requested or default


def _query_tag(query: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(query, sort_keys=True, default=str).encode()).hexdigest()[:16]


def encode_token(cursor: dict[str, Any], query: dict[str, Any]) -> str:
    """A token that resumes after `cursor`, valid only for the same `query`."""
    payload = json.dumps({"c": cursor, "q": _query_tag(query)}, separators=(",", ":"), default=str)
    return base64.urlsafe_b64encode(payload.encode()).decode().rstrip("=")


def decode_token(token: str, query: dict[str, Any]) -> dict[str, Any] | None:
    """The cursor in `token` (None for the first page)."""
    if not token:
        return None
    try:
        padded = token + "=" * (-len(token) % 4)
        payload = json.loads(base64.urlsafe_b64decode(padded.encode()))
        cursor = payload["c"]
        tag = payload["q"]
    except (binascii.Error, ValueError, KeyError, TypeError, UnicodeDecodeError):
        raise invalid("page_token", "is not a token this service issued") from None
    if tag != _query_tag(query) or not isinstance(cursor, dict):
        raise invalid("page_token", "belongs to a different query")
    return cursor
