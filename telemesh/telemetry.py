"""The one telemetry setup: OpenTelemetry traces and metrics for a Telemesh process.

Configured by the standard OTEL_* variables, so any backend works: spans and metrics
go out by OTLP when OTEL_EXPORTER_OTLP_ENDPOINT (or the per-signal endpoint) is set,
OTEL_TRACES_SAMPLER picks the sampler, and TELEMESH_METRICS_PORT opens a Prometheus
scrape endpoint.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import MetricReader, PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

from telemesh.config import load, setting
from telemesh.tracing.ids import PresetIdGenerator


@dataclass(frozen=True)
class TelemetrySettings:
    metrics_port: int = setting(
        "TELEMESH_METRICS_PORT", 0, "Port of the Prometheus scrape endpoint; 0 turns it off."
    )
    metrics_host: str = setting(
        "TELEMESH_METRICS_HOST", "127.0.0.1", "Address the Prometheus endpoint binds."
    )


def _otlp_configured(signal: str) -> bool:
    if os.environ.get(f"OTEL_{signal.upper()}_EXPORTER", "otlp") == "none":
        return False
    return bool(
        os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
        or os.environ.get(f"OTEL_EXPORTER_OTLP_{signal.upper()}_ENDPOINT")
    )


@dataclass
class Telemetry:
    tracer_provider: TracerProvider
    meter_provider: MeterProvider

    def shutdown(self) -> None:
        self.tracer_provider.shutdown()
        self.meter_provider.shutdown()


def setup_telemetry(service: str) -> Telemetry:
    """Installs the global tracer and meter providers for `service` (once per process)."""
    settings = load(TelemetrySettings)
    resource = Resource.create(
        {"service.name": f"telemesh-{service}", "service.namespace": "telemesh"}
    )
    # Preset ids let a visit's root span be recorded at completion with the ids chosen
    # at booking (telemesh.tracing.visit).
    tracer_provider = TracerProvider(resource=resource, id_generator=PresetIdGenerator())
    if _otlp_configured("traces"):
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        tracer_provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(tracer_provider)

    readers: list[MetricReader] = []
    if _otlp_configured("metrics"):
        from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter

        readers.append(PeriodicExportingMetricReader(OTLPMetricExporter()))
    if settings.metrics_port:
        from opentelemetry.exporter.prometheus import PrometheusMetricReader
        from prometheus_client import start_http_server

        start_http_server(settings.metrics_port, addr=settings.metrics_host)
        readers.append(PrometheusMetricReader())
    meter_provider = MeterProvider(resource=resource, metric_readers=readers)
    metrics.set_meter_provider(meter_provider)
    return Telemetry(tracer_provider, meter_provider)
