"""End-user and service tokens: the dev issuer that mints them and the verifier.

Tokens are ES256 JWTs with `iss`, `aud`, `sub` (the user's or service's id) and `role`
(patient, clinician, billing, admin, partner or service); a partner clinic's
token has the clinic's id as subject. Locally, `telemesh token` mints them
with the dev issuer's key under `$TELEMESH_HOME/issuer/`; the services verify them
against its JWKS file, and the edge Envoy against the same keys served over HTTP by
`telemesh up` (telemesh_tools.stack.jwks_endpoint). Both look at the keys again every
TELEMESH_JWKS_REFRESH_SECONDS, so a removed key stops working without a restart. In
production a real identity provider takes the issuer's place and only the JWKS changes.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt

from telemesh.config import DEFAULT_JWKS_REFRESH_SECONDS
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


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def check_claim_types(claims: dict[str, Any]) -> None:
    """Refuses claims of the wrong JSON type: PyJWT accepts `exp: "1700000000"` and a
    non-string `role`, which would otherwise reach callers (or a comparison) as is."""
    for name in ("exp", "iat", "nbf"):
        if name in claims and not _is_number(claims[name]):
            raise InvalidToken(f"claim {name!r} must be a number")
    for name in ("sub", "iss", "role"):
        if name in claims and not isinstance(claims[name], str):
            raise InvalidToken(f"claim {name!r} must be a string")
    if not claims.get("sub"):
        raise InvalidToken("claim 'sub' must not be empty")
    audience = claims.get("aud")
    if not (
        isinstance(audience, str)
        or (isinstance(audience, list) and all(isinstance(item, str) for item in audience))
    ):
        raise InvalidToken("claim 'aud' must be a string or a list of strings")


@dataclass(frozen=True)
class _Remembered:
    """A verified token, with what it rests on: its key and its expiry."""

    verified: VerifiedClaims
    kid: str
    expires_at: float


def _digest(data: bytes | None) -> str | None:
    return None if data is None else hashlib.sha256(data).hexdigest()


class JwksVerifier:
    """Verifies ES256 JWTs against a JWKS file, or, without a file, against the keys its
    owner hands it (`set_jwks`).

    The file is read again when its content changed, checked at most every
    `refresh_seconds`: a key removed from it stops verifying within that interval,
    without a restart. A token naming a key we do not know has it looked at sooner (at
    most once a second), so a newly published key works at once. A file that is missing
    or does not parse holds no keys.
    """

    # Verified tokens are remembered until they expire or their key goes: a client
    # presents the same token on every call, and an ES256 verification costs more than
    # the rest of a small call's runtime work.
    CACHE_SIZE = 10_000
    # The least time between two looks at the file that unknown key ids may cause.
    UNKNOWN_KID_RECHECK_SECONDS = 1.0

    def __init__(
        self,
        jwks_path: Path | None,
        issuer: str = ISSUER,
        audience: str = AUDIENCE,
        refresh_seconds: float = DEFAULT_JWKS_REFRESH_SECONDS,
    ) -> None:
        self.jwks_path = jwks_path
        self.issuer = issuer
        self.audience = audience
        self.refresh_seconds = refresh_seconds
        self._checked_at: float | None = None
        self._file_digest: str | None = None
        self._keys: dict[str, Any] = {}
        self._verified: OrderedDict[str, _Remembered] = OrderedDict()

    def _load(self, interval: float | None = None) -> None:
        if self.jwks_path is None:
            return
        now = time.monotonic()
        wait = self.refresh_seconds if interval is None else interval
        if self._checked_at is not None and now - self._checked_at < wait:
            return
        self._checked_at = now
        try:
            data: bytes | None = self.jwks_path.read_bytes()
        except OSError:
            data = None
        digest = _digest(data)
        if digest == self._file_digest and self._file_digest is not None:
            return
        self._file_digest = digest
        try:
            self.set_jwks(json.loads(data) if data is not None else {"keys": []})
        except (ValueError, TypeError, KeyError, AttributeError, jwt.PyJWTError):
            # Half written or broken: no keys until it parses (looked at again next call).
            self.set_jwks({"keys": []})
            self._file_digest = None
            self._checked_at = None

    def set_jwks(self, jwks: dict[str, Any]) -> None:
        self._keys = {
            key["kid"]: jwt.PyJWK(key, algorithm="ES256").key for key in jwks.get("keys", [])
        }
        self._verified.clear()  # a key may have been withdrawn

    def knows(self, kid: str) -> bool:
        """Whether a key with this id is among the current keys."""
        return kid in self._keys

    def verify(self, token: str, *, load: bool = True) -> VerifiedClaims:
        if load:
            self._load()
        known = self._verified.get(token)
        if known is not None:
            if known.expires_at > time.time() and known.kid in self._keys:
                self._verified.move_to_end(token)
                return known.verified
            del self._verified[token]
        remembered = self._verify(token, load)
        self._verified[token] = remembered
        if len(self._verified) > self.CACHE_SIZE:
            self._verified.popitem(last=False)
        return remembered.verified

    def _verify(self, token: str, load: bool) -> _Remembered:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise InvalidToken("malformed token") from None
        kid = header.get("kid")
        if load and isinstance(kid, str) and kid not in self._keys:
            self._load(self.UNKNOWN_KID_RECHECK_SECONDS)
        if not isinstance(kid, str) or kid not in self._keys:
            raise InvalidToken("unknown signing key")
        key = self._keys[kid]
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
        check_claim_types(claims)
        verified = VerifiedClaims(claims["sub"], claims.get("role", ""), claims)
        return _Remembered(verified, kid, float(claims["exp"]))
