"""The signaling service's own settings (environment variables)."""

from __future__ import annotations

from dataclasses import dataclass

from telemesh.config import setting


@dataclass(frozen=True)
class SignalingSettings:
    replay_buffer_events: int = setting(
        "TELEMESH_SIGNALING_REPLAY_BUFFER",
        256,
        "Events kept per participant for a client that resumes its stream.",
    )
    keepalive_seconds: float = setting(
        "TELEMESH_SIGNALING_KEEPALIVE_SECONDS",
        15.0,
        "A keepalive event goes down a room stream after this long without events.",
    )
    max_sdp_bytes: int = setting(
        "TELEMESH_SIGNALING_MAX_SDP_BYTES", 32_768, "Largest SDP relayed, in bytes."
    )
    max_candidate_bytes: int = setting(
        "TELEMESH_SIGNALING_MAX_CANDIDATE_BYTES", 512, "Largest ICE candidate line, in bytes."
    )
    max_candidates_per_batch: int = setting(
        "TELEMESH_SIGNALING_MAX_CANDIDATES", 50, "Most ICE candidates in one SendIceCandidates."
    )
    rate_per_second: float = setting(
        "TELEMESH_SIGNALING_RATE_PER_SECOND",
        20.0,
        "Uplink calls a participant may make per second, sustained (token bucket).",
    )
    rate_burst: int = setting(
        "TELEMESH_SIGNALING_RATE_BURST", 60, "Uplink calls a participant may make at once."
    )
    stun_urls: tuple[str, ...] = setting(
        "TELEMESH_SIGNALING_STUN_URLS", (), "STUN URLs handed to peers (comma-separated)."
    )
    turn_urls: tuple[str, ...] = setting(
        "TELEMESH_SIGNALING_TURN_URLS",
        (),
        "TURN URLs handed to peers (comma-separated), e.g. `turn:turn.example:3478`.",
    )
    turn_secret: str = setting(
        "TELEMESH_SIGNALING_TURN_SECRET",
        "",
        "coturn `static-auth-secret` (`use-auth-secret` scheme); TURN is off when empty.",
    )
    turn_ttl_seconds: int = setting(
        "TELEMESH_SIGNALING_TURN_TTL_SECONDS",
        3600,
        "Longest lifetime of a TURN credential; it also ends with the visit's join window.",
    )
    jwks_refresh_seconds: float = setting(
        "TELEMESH_SIGNALING_JWKS_MIN_REFRESH_SECONDS",
        5.0,
        "Least time between two fetches of the join-token keys on unknown `kid`s.",
    )
    reconnect_grace_seconds: float = setting(
        "TELEMESH_SIGNALING_RECONNECT_GRACE_SECONDS",
        10.0,
        "After a restart, how long a call counted as connected waits for both peers.",
    )
    closed_room_seconds: float = setting(
        "TELEMESH_SIGNALING_CLOSED_ROOM_SECONDS",
        60.0,
        "How long a closed room stays in memory; a later call reads its record again.",
    )
    precall_seconds: float = setting(
        "TELEMESH_SIGNALING_PRECALL_SECONDS",
        4.0,
        "How long a pre-call check measures once connected.",
    )
    precall_connect_timeout_seconds: float = setting(
        "TELEMESH_SIGNALING_PRECALL_CONNECT_TIMEOUT_SECONDS",
        10.0,
        "How long the echo peer waits for the caller to connect.",
    )
    max_precall_checks: int = setting(
        "TELEMESH_SIGNALING_MAX_PRECALL_CHECKS",
        4,
        "Pre-call checks running at once, at most, for all users (one per user).",
    )
    precall_allow_loopback: bool = setting(
        "TELEMESH_SIGNALING_PRECALL_ALLOW_LOOPBACK",
        False,
        "The echo peer may check loopback candidates (both ends on one machine: tests, "
        "the demo, `telemesh up`); private and other special addresses never pass.",
    )
    consent_watch: bool = setting(
        "TELEMESH_SIGNALING_CONSENT_WATCH",
        True,
        "Watch consent changes: telehealth revoked closes the room, recording revoked stops it.",
    )
