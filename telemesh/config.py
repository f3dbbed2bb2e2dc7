"""Settings from environment variables: the one config loader every service uses.

A settings class is a frozen dataclass whose fields are declared with `setting(...)`,
naming the environment variable, its default and a line of documentation. `load()`
reads and converts them; bad values fail at start-up with the variable's name. The
README's configuration table lists the same fields (`telemesh config` prints it).
"""

from __future__ import annotations

import dataclasses
import os
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

SERVICES = ("session", "signaling", "consent", "billing")

# Where each service listens by default when TELEMESH_LISTEN is not set.
DEFAULT_PORTS = {"session": 50051, "signaling": 50052, "consent": 50053, "billing": 50054}

# How often the JWKS is looked at again by default, and the longest a removed signing
# key may keep working (the security model's promise).
DEFAULT_JWKS_REFRESH_SECONDS = 15.0
MAX_JWKS_REFRESH_SECONDS = 60.0


class ConfigError(ValueError):
    """An environment variable holds a value its setting cannot take."""


def setting(env: str, default: Any, doc: str) -> Any:
    """Declares a dataclass field read from environment variable `env`."""
    return dataclasses.field(default=default, metadata={"env": env, "doc": doc})


def _convert(name: str, raw: str, kind: Any) -> Any:
    if kind is bool:
        lowered = raw.strip().lower()
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off", ""):
            return False
        raise ConfigError(f"{name}: expected a boolean, got {raw!r}")
    if kind is int:
        try:
            return int(raw)
        except ValueError:
            raise ConfigError(f"{name}: expected an integer, got {raw!r}") from None
    if kind is float:
        try:
            return float(raw)
        except ValueError:
            raise ConfigError(f"{name}: expected a number, got {raw!r}") from None
    if kind is Path:
        return Path(raw).expanduser()
    if kind == tuple[str, ...]:
        return tuple(part.strip() for part in raw.split(",") if part.strip())
    return raw


def _field_kind(cls: type, field: dataclasses.Field[Any]) -> Any:
    hints = typing.get_type_hints(cls)
    kind = hints[field.name]
    # `X | None` settings convert as X.
    if isinstance(kind, types.UnionType):
        args = [a for a in kind.__args__ if a is not type(None)]
        kind = args[0]
    return kind


def load(cls: type[T], environ: Mapping[str, str] | None = None) -> T:
    """Builds `cls` from the environment (or `environ`), converting each field."""
    env = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    for field in dataclasses.fields(cls):  # type: ignore[arg-type]
        name = field.metadata.get("env")
        if name is None or name not in env:
            continue
        values[field.name] = _convert(name, env[name], _field_kind(cls, field))
    return cls(**values)


def describe(cls: type) -> list[tuple[str, str, str]]:
    """(variable, default, documentation) for each setting of `cls`."""
    rows = []
    for field in dataclasses.fields(cls):
        if "env" in field.metadata:
            default = "" if field.default is None else str(field.default)
            rows.append((field.metadata["env"], default, field.metadata["doc"]))
    return rows


@dataclass(frozen=True)
class RuntimeSettings:
    """What every service reads: where it lives, listens, stores and who it trusts."""

    home: Path = setting(
        "TELEMESH_HOME",
        Path(".telemesh"),
        "State folder: SQLite files, keys, the local CA, traces.",
    )
    listen: str | None = setting(
        "TELEMESH_LISTEN",
        None,
        "`HOST:PORT` or `unix:PATH` to serve on; default 127.0.0.1:5005x per service.",
    )
    database_url: str | None = setting(
        "TELEMESH_DATABASE_URL",
        None,
        "The service's own database (SQLAlchemy URL); default SQLite $TELEMESH_HOME/<service>.db.",
    )
    page_token_secret: str | None = setting(
        "TELEMESH_PAGE_TOKEN_SECRET",
        None,
        "Hex secret that signs page tokens (at least 16 bytes), the same in every replica of "
        "a service; default a secret made once in $TELEMESH_HOME/<service>/.",
    )
    log_level: str = setting("TELEMESH_LOG_LEVEL", "INFO", "Log level of the JSON logs on stderr.")
    drain_seconds: float = setting(
        "TELEMESH_DRAIN_SECONDS", 10.0, "How long in-flight calls may run after SIGTERM."
    )
    jwks_file: Path | None = setting(
        "TELEMESH_JWKS_FILE",
        None,
        "JWKS that verifies end-user tokens; default $TELEMESH_HOME/issuer/jwks.json.",
    )
    jwks_refresh_seconds: float = setting(
        "TELEMESH_JWKS_REFRESH_SECONDS",
        DEFAULT_JWKS_REFRESH_SECONDS,
        "How often the JWKS is looked at again (services and the local edge); a removed key "
        "stops working within this interval. More than 0, at most 60.",
    )
    dev_issuer: bool = setting(
        "TELEMESH_DEV_ISSUER",
        True,
        "Create the dev token issuer's key on start when it is missing (local use only).",
    )
    service_tokens: bool = setting(
        "TELEMESH_SERVICE_TOKENS",
        True,
        "Outgoing calls carry a dev-issuer service JWT (off where mTLS gives identity).",
    )
    trust_forwarded_identity: bool = setting(
        "TELEMESH_TRUST_FORWARDED_IDENTITY",
        False,
        "Take the caller's service identity from the sidecar's x-forwarded-client-cert header.",
    )
    trust_domain: str = setting(
        "TELEMESH_TRUST_DOMAIN", "telemesh.local", "SPIFFE trust domain of service identities."
    )
    namespace: str = setting("TELEMESH_NAMESPACE", "telemesh", "Namespace in SPIFFE ids.")
    session_addr: str = setting(
        "TELEMESH_SESSION_ADDR", "127.0.0.1:50051", "Where this service reaches SessionService."
    )
    signaling_addr: str = setting(
        "TELEMESH_SIGNALING_ADDR", "127.0.0.1:50052", "Where this service reaches SignalingService."
    )
    consent_addr: str = setting(
        "TELEMESH_CONSENT_ADDR", "127.0.0.1:50053", "Where this service reaches ConsentService."
    )
    billing_addr: str = setting(
        "TELEMESH_BILLING_ADDR", "127.0.0.1:50054", "Where this service reaches BillingService."
    )

    def __post_init__(self) -> None:
        if not 0 < self.jwks_refresh_seconds <= MAX_JWKS_REFRESH_SECONDS:
            raise ConfigError(
                "TELEMESH_JWKS_REFRESH_SECONDS: expected more than 0 and at most "
                f"{MAX_JWKS_REFRESH_SECONDS:g}, got {self.jwks_refresh_seconds:g}"
            )

    def listen_address(self, service: str) -> str:
        return self.listen or f"127.0.0.1:{DEFAULT_PORTS[service]}"

    def database(self, service: str) -> str:
        return self.database_url or f"sqlite:///{(self.home / f'{service}.db').resolve()}"

    def jwks_path(self) -> Path:
        return self.jwks_file or self.home / "issuer" / "jwks.json"

    def address_of(self, service: str) -> str:
        value: str = getattr(self, f"{service}_addr")
        return value
