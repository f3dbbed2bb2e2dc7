"""Paging for every List RPC: `page_size`, `page_token`, `next_page_token`.

Tokens are opaque to clients (URL-safe base64 of a small JSON cursor); one that does
not decode, or that belongs to another query, is INVALID_ARGUMENT.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from telemesh.errors import invalid

T = TypeVar("T")

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


def page_of(
    rows: Sequence[T],
    size: int,
    cursor_of: Callable[[T], dict[str, Any]],
    query: dict[str, Any],
) -> tuple[list[T], str]:
    """One page of `rows`, read with a limit of `size + 1`, and its `next_page_token`.

    The row past `size` only tells that another page follows: it is dropped, and the
    token resumes after the page's last row (`cursor_of` it). On the last page the token
    is empty.
    """
    if len(rows) <= size:
        return list(rows), ""
    page = list(rows[:size])
    return page, encode_token(cursor_of(page[-1]), query)
