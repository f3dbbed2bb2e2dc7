"""Join tokens from the session service: verified against its published keys.

SessionService.IssueJoinToken signs them (ES256, `kid` in the header); its
GetJoinTokenKeys returns the JWKS. The keys are cached and fetched again when a token
names a `kid` we do not know (a key rotation), at most once per interval.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import jwt

from telemesh.errors import PermissionDenied
from telemesh.identity.tokens import InvalidToken, JwksVerifier

ISSUER = "telemesh-session"
AUDIENCE = "telemesh-signaling"
ROLES = ("patient", "clinician")


@dataclass(frozen=True)
class JoinClaims:
    """What a verified join token grants: `subject` joins `visit_id` as `role` until the
    join window closes at `window_end` (Unix seconds)."""

    subject: str
    role: str
    visit_id: str
    patient_id: str
    clinician_id: str
    traceparent: str = ""  # the visit's trace, so the room's spans join it
    window_end: int = 0  # 0: closed (fail closed where a caller leaves it out)


def _refused(why: str) -> PermissionDenied:
    return PermissionDenied("INVALID_JOIN_TOKEN", f"the join token is not valid: {why}")


class JoinTokenVerifier:
    def __init__(
        self, fetch_jwks: Callable[[], Awaitable[str]], min_refresh_seconds: float = 5.0
    ) -> None:
        self._fetch_jwks = fetch_jwks
        self._min_refresh = min_refresh_seconds
        # Keys come from the session service, never from a file.
        self._verifier = JwksVerifier(None, issuer=ISSUER, audience=AUDIENCE)
        self._fetched_at: float | None = None
        self._lock = asyncio.Lock()

    async def _refresh(self) -> None:
        async with self._lock:
            now = time.monotonic()
            if self._fetched_at is not None and now - self._fetched_at < self._min_refresh:
                return
            self._verifier.set_jwks(json.loads(await self._fetch_jwks()))
            self._fetched_at = time.monotonic()

    async def verify(self, token: str) -> JoinClaims:
        try:
            kid = str(jwt.get_unverified_header(token).get("kid", ""))
        except jwt.PyJWTError:
            raise _refused("malformed") from None
        if not self._verifier.knows(kid):
            await self._refresh()
        try:
            verified = self._verifier.verify(token)
        except InvalidToken as exc:
            raise _refused(str(exc)) from None
        claims = verified.claims
        fields = {
            name: str(claims.get(name, "")) for name in ("visit_id", "patient_id", "clinician_id")
        }
        if verified.role not in ROLES or not all(fields.values()):
            raise _refused("missing claims")
        expected = fields["patient_id"] if verified.role == "patient" else fields["clinician_id"]
        if verified.subject != expected:
            raise _refused("subject is not the visit's participant")
        try:
            # Tokens from a session service without the claim end the window with
            # themselves: the nearest end we know of.
            window_end = int(claims.get("window_end", claims["exp"]))
        except (KeyError, TypeError, ValueError):
            raise _refused("bad window_end") from None
        return JoinClaims(
            verified.subject,
            verified.role,
            **fields,
            traceparent=str(claims.get("traceparent", "")),
            window_end=window_end,
        )
