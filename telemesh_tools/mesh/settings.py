"""Settings of the local mesh (`telemesh up`), read like every other setting."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from telemesh.config import setting

# The tools run from a checkout; an installed copy is pointed at one (TELEMESH_ALLOWLIST).
CHECKOUT = Path(__file__).resolve().parent.parent.parent


@dataclass(frozen=True)
class MeshSettings:
    allowlist: Path = setting(
        "TELEMESH_ALLOWLIST",
        CHECKOUT / "mesh" / "allowlist.yaml",
        "The mesh's allow-list (who may call what); default the checkout's mesh/allowlist.yaml.",
    )
    edge_port: int = setting(
        "TELEMESH_EDGE_PORT", 8443, "Port of the local edge Envoy (HTTPS, gRPC-web); 0 picks one."
    )
    cert_ttl_seconds: int = setting(
        "TELEMESH_CERT_TTL_SECONDS",
        86400,
        "Lifetime of the local mesh's workload certificates; renewed at half their life.",
    )
    envoy_log_level: str = setting(
        "TELEMESH_ENVOY_LOG_LEVEL", "warning", "Log level of the local Envoys."
    )
    envoy_concurrency: int = setting(
        "TELEMESH_ENVOY_CONCURRENCY", 1, "Worker threads of each local Envoy."
    )
