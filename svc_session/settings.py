"""The session service's own settings (environment variables)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from telemesh.config import setting


@dataclass(frozen=True)
class SessionSettings:
    phi_keys: str = setting(
        "TELEMESH_SESSION_PHI_KEYS",
        "",
        "PHI field keys `kid:base64,...` (first encrypts); default a key file in TELEMESH_HOME.",
    )
    phi_key_file: Path | None = setting(
        "TELEMESH_SESSION_PHI_KEY_FILE",
        None,
        "PHI key file; default $TELEMESH_HOME/session/phi-keys.json (created when missing).",
    )
    join_key_dir: Path | None = setting(
        "TELEMESH_JOIN_TOKEN_KEY_DIR",
        None,
        "Folder of the join-token signing key; default $TELEMESH_HOME/session/join-token-key.",
    )
    join_token_ttl_seconds: int = setting(
        "TELEMESH_JOIN_TOKEN_TTL_SECONDS", 600, "Lifetime of a join token."
    )
    join_window_before_minutes: int = setting(
        "TELEMESH_JOIN_WINDOW_BEFORE_MINUTES",
        15,
        "How early before the slot a participant may check in and get a join token.",
    )
    join_window_after_minutes: int = setting(
        "TELEMESH_JOIN_WINDOW_AFTER_MINUTES",
        60,
        "How long after the slot's end a participant may still get a join token.",
    )
    no_show_grace_minutes: int = setting(
        "TELEMESH_NO_SHOW_GRACE_MINUTES",
        15,
        "After the slot starts, how long before a visit nobody joined is a no-show.",
    )
    no_show_sweep_seconds: float = setting(
        "TELEMESH_NO_SHOW_SWEEP_SECONDS", 30.0, "How often overdue visits are marked no-show."
    )
    outbox_relay: bool = setting(
        "TELEMESH_OUTBOX_RELAY",
        True,
        "Run the outbox relay inside the service (off when a standalone relay runs).",
    )
