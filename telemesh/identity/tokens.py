"""End-user and service tokens: the dev issuer that mints them and the verifier.

Tokens are ES256 JWTs with `iss`, `aud`, `sub` (the user's or service's id) and `role`
(patient, clinician, billing, admin, partner or service); a partner clinic's
token has the clinic's id as subject. Locally, `telemesh token` mints them
with the dev issuer's key under `$TELEMESH_HOME/issuer/`; the edge Envoy and the
services verify them against its JWKS file. In production a real identity provider
takes the issuer's place and only the JWKS changes.
"""

from __future__ import annotations

import json
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt

from telemesh.identity.signing_keys import SigningKey

ISSUER = "telemesh-dev"
AUDIENCE = "telemesh"
ROLES = ("patient", "clinician", "billing", "admin", "partner", "service")


def issuer_folder(home: Path) -> Path:
    return home / "issuer"


class DevIssuer:
    """Mints end-user and service tokens with the local issuer key."""

    def __init__(self, home: Path) -> None:
        self.key = SigningKey.load_or_create(issuer_folder(home))

    @property
    def jwks_path(self) -> Path:
        return self.key.folder / "jwks.json"

    def mint(self, subject: str, role: str, ttl_seconds: int = 3600) -> str:
        if role not in ROLES:
            raise ValueError(f"unknown role {role!r}; one of {', '.join(ROLES)}")
        if not subject:
            raise ValueError("a token needs a subject")
        claims = {"iss": ISSUER, "aud": AUDIENCE, "sub": subject, "role": role}
        return self.key.sign(claims, ttl_seconds)


class InvalidToken(Exception):
    """A token that does not verify; the message says why (never the token)."""


@dataclass(frozen=True)
class VerifiedClaims:
    subject: str
    role: str
    claims: dict[str, Any]


class JwksVerifier:
    """Verifies ES256 JWTs against a JWKS file, re-reading it when it changes; without a
    file, against the keys its owner hands it (`set_jwks`)."""

    # Verified tokens are remembered until they expire: a client presents the same
    # token on every call, and an ES256 verification costs more than the rest of a
    # small call's runtime work.
    CACHE_SIZE = 10_000

    def __init__(
        self, jwks_path: Path | None, issuer: str = ISSUER, audience: str = AUDIENCE
    ) -> None:
        self.jwks_path = jwks_path
        self.issuer = issuer
        self.audience = audience
        self._mtime: float | None = None
        self._keys: dict[str, Any] = {}
        self._verified: OrderedDict[str, VerifiedClaims] = OrderedDict()

    def _load(self) -> None:
        if self.jwks_path is None:
            return
        try:
            mtime = self.jwks_path.stat().st_mtime
        except FileNotFoundError:
            self._keys = {}
            self._mtime = None
            return
        if mtime == self._mtime:
            return
        self.set_jwks(json.loads(self.jwks_path.read_text()))
        self._mtime = mtime

    def set_jwks(self, jwks: dict[str, Any]) -> None:
        self._verified.clear()  # a key may have been withdrawn
        self._keys = {
            key["kid"]: jwt.PyJWK(key, algorithm="ES256").key for key in jwks.get("keys", [])
        }

    def knows(self, kid: str) -> bool:
        """Whether a key with this id is among the current keys."""
        return kid in self._keys

    def verify(self, token: str, *, load: bool = True) -> VerifiedClaims:
        if load:
            self._load()
        known = self._verified.get(token)
        if known is not None:
            if known.claims["exp"] > time.time():
                self._verified.move_to_end(token)
                return known
            del self._verified[token]
        verified = self._verify(token)
        self._verified[token] = verified
        if len(self._verified) > self.CACHE_SIZE:
            self._verified.popitem(last=False)
        return verified

    def _verify(self, token: str) -> VerifiedClaims:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise InvalidToken("malformed token") from None
        key = self._keys.get(str(header.get("kid", "")))
        if key is None:
            raise InvalidToken("unknown signing key")
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=["ES256"],
                audience=self.audience,
                issuer=self.issuer,
                options={"require": ["exp", "iat", "sub"]},
            )
        except jwt.ExpiredSignatureError:
            raise InvalidToken("token expired") from None
        except jwt.PyJWTError as exc:
            raise InvalidToken(f"token rejected: {type(exc).__name__}") from None
        return VerifiedClaims(str(claims["sub"]), str(claims.get("role", "")), claims)
