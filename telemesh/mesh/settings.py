"""Settings of the local mesh (`telemesh up`), read like every other setting."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from telemesh.config import setting


@dataclass(frozen=True)
class MeshSettings:
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


def otlp_target(environ: Mapping[str, str] | None = None) -> tuple[str, int] | None:
    """(host, port) of the OTLP/gRPC trace receiver named by the standard OTEL variables."""
    env = os.environ if environ is None else environ
    if env.get("OTEL_TRACES_EXPORTER", "otlp") == "none":
        return None
    url = env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_ENDPOINT")
    if not url:
        return None
    parts = urlsplit(url if "://" in url else f"http://{url}")
    if not parts.hostname:
        return None
    return parts.hostname, parts.port or 4317
