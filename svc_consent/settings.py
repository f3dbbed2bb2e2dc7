"""The consent service's own settings (environment variables)."""

from __future__ import annotations

from dataclasses import dataclass

from telemesh.config import setting


@dataclass(frozen=True)
class ConsentSettings:
    expiry_sweep_seconds: float = setting(
        "TELEMESH_CONSENT_EXPIRY_SWEEP_SECONDS",
        5.0,
        "How often consents whose period ended are recorded as expired (checks deny at once).",
    )
    change_poll_seconds: float = setting(
        "TELEMESH_CONSENT_CHANGE_POLL_SECONDS",
        0.25,
        "How often watch streams look for changes written by other replicas.",
    )
    check_batch_size: int = setting(
        "TELEMESH_CONSENT_CHECK_BATCH",
        128,
        "Most audited checks committed together in one transaction.",
    )
