"""Paging for every List RPC: `page_size`, `page_token`, `next_page_token`.

Tokens are opaque to clients: URL-safe base64 of a small JSON cursor, a dot, and an
HMAC-SHA256 of it with the service's own secret. A client can neither forge nor edit a
cursor, so what reaches a query is always what the service put there; a token that does
not verify (bad, edited, from another service or another process's secret) or that
belongs to another query is INVALID_ARGUMENT on `page_token`, never INTERNAL.

Each service keeps its secret in `$TELEMESH_HOME/<service>/page-token.key` (created
owner-only on first start, shared by every replica that shares the home); a process
that never installed one signs with a random secret of its own.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import os
import secrets
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

from telemesh.errors import invalid

T = TypeVar("T")

DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 500
KEY_FILE = "page-token.key"
SECRET_BYTES = 32
# Far above any token this module writes; refused before any decoding work.
MAX_TOKEN_CHARS = 2048
# What the MAC covers besides the payload: tokens are no use for anything else.
_MAC_CONTEXT = b"telemesh page token v1\0"
_NOT_OURS = "is not a token this service issued"


def page_size(
    requested: int, default: int = DEFAULT_PAGE_SIZE, maximum: int = MAX_PAGE_SIZE
) -> int:
    if requested < 0 or requested > maximum:
        raise invalid("page_size", f"must be between 0 and {maximum}")
    return requested or default


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    if not text.isascii():
        raise ValueError("not base64")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _query_tag(query: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(query, sort_keys=True, default=str).encode()).hexdigest()[:16]


def load_or_create_secret(path: Path) -> bytes:
    """The secret in `path`, created first (owner-only, 0600) when missing.

    Replicas may start at once: each writes a candidate that only its owner can read
    and links it into place; the first link wins and the rest read the winner's.
    """
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        candidate = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
        descriptor = os.open(candidate, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(descriptor, secrets.token_hex(SECRET_BYTES).encode())
        finally:
            os.close(descriptor)
        try:
            os.link(candidate, path)  # atomic, and never replaces another's secret
        except FileExistsError:
            pass
        finally:
            candidate.unlink()
    secret = bytes.fromhex(path.read_text().strip())
    if len(secret) < 16:
        raise ValueError(f"{path} holds too short a secret")
    return secret


class PageTokens:
    """Signs and verifies the page tokens of one service."""

    def __init__(self, secret: bytes) -> None:
        self._secret = secret

    @classmethod
    def for_service(cls, home: Path, service: str, secret_hex: str | None = None) -> PageTokens:
        """The service's page tokens: signed with `secret_hex` when given (replicas that
        keep no shared folder share it, so any replica reads another's tokens), else
        with the secret kept in `home`."""
        if secret_hex:
            secret = bytes.fromhex(secret_hex.strip())
            if len(secret) < 16:
                raise ValueError("TELEMESH_PAGE_TOKEN_SECRET: at least 16 bytes, in hex")
            return cls(secret)
        return cls(load_or_create_secret(home / service / KEY_FILE))

    def _mac(self, payload: bytes) -> bytes:
        return hmac.new(self._secret, _MAC_CONTEXT + payload, hashlib.sha256).digest()

    def encode(self, cursor: Mapping[str, Any], query: Mapping[str, Any]) -> str:
        payload = json.dumps(
            {"c": cursor, "q": _query_tag(query)}, separators=(",", ":"), default=str
        ).encode()
        return f"{_b64(payload)}.{_b64(self._mac(payload))}"

    def decode(
        self,
        token: str,
        query: Mapping[str, Any],
        fields: Mapping[str, type] | None = None,
    ) -> dict[str, Any] | None:
        if not token:
            return None
        if len(token) > MAX_TOKEN_CHARS:
            raise invalid("page_token", _NOT_OURS)
        body, _, mac = token.partition(".")
        try:
            payload = _unb64(body)
            verified = hmac.compare_digest(_unb64(mac), self._mac(payload))
        except (binascii.Error, ValueError):
            verified = False
        if not verified:
            raise invalid("page_token", _NOT_OURS)
        # Ours, so well formed; still checked, since a cursor goes into a query.
        try:
            content = json.loads(payload)
            cursor, tag = content["c"], content["q"]
        except (ValueError, KeyError, TypeError):
            raise invalid("page_token", _NOT_OURS) from None
        if tag != _query_tag(query) or not isinstance(cursor, dict):
            raise invalid("page_token", "belongs to a different query")
        if fields is not None and not _has_shape(cursor, fields):
            raise invalid("page_token", _NOT_OURS)
        return cursor


def _has_shape(cursor: Mapping[str, Any], fields: Mapping[str, type]) -> bool:
    # Exact types: JSON's true is not an int here.
    return set(cursor) == set(fields) and all(type(cursor[k]) is t for k, t in fields.items())


_tokens = PageTokens(secrets.token_bytes(SECRET_BYTES))


def install(tokens: PageTokens) -> None:
    """Makes `tokens` sign and verify this process's page tokens (at service start)."""
    global _tokens
    _tokens = tokens


def encode_token(cursor: Mapping[str, Any], query: Mapping[str, Any]) -> str:
    """A token that resumes after `cursor`, valid only for the same `query`."""
    return _tokens.encode(cursor, query)


def decode_token(
    token: str, query: Mapping[str, Any], fields: Mapping[str, type] | None = None
) -> dict[str, Any] | None:
    """The cursor in `token` (None for the first page); with `fields`, the cursor must
    have exactly those keys with values of exactly those types."""
    return _tokens.decode(token, query, fields)


def page_of(
    rows: Sequence[T],
    size: int,
    cursor_of: Callable[[T], dict[str, Any]],
    query: Mapping[str, Any],
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
