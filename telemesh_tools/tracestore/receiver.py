"""The local trace receiver: an OTLP/gRPC TraceService that stores what it receives.

`telemesh up` runs it (`python -m telemesh_tools.tracestore.receiver`); services and Envoys
export to it with the standard OTLP exporter (OTEL_EXPORTER_OTLP_ENDPOINT). It stores
spans in $TELEMESH_HOME/traces.db for `telemesh trace`.
"""

from __future__ import annotations

import asyncio
import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc

from telemesh.config import RuntimeSettings, load, setting
from telemesh.file_modes import owner_only
from telemesh.logs import setup_logging
from telemesh.server import serve
from telemesh_tools.tracestore.store import SpanStore


@dataclass(frozen=True)
class ReceiverSettings:
    listen: str = setting(
        "TELEMESH_TRACE_LISTEN",
        "127.0.0.1:4317",
        "Where the local trace receiver listens (OTLP/gRPC).",
    )
    store: Path | None = setting(
        "TELEMESH_TRACE_STORE", None, "The span store file; default $TELEMESH_HOME/traces.db."
    )


def store_path(settings: RuntimeSettings, receiver: ReceiverSettings) -> Path:
    return receiver.store or settings.home / "traces.db"


class TraceReceiver(trace_service_pb2_grpc.TraceServiceServicer):
    def __init__(self, store: SpanStore) -> None:
        self.store = store

    async def Export(
        self,
        request: trace_service_pb2.ExportTraceServiceRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> trace_service_pb2.ExportTraceServiceResponse:
        await asyncio.to_thread(self.store.add, request)
        return trace_service_pb2.ExportTraceServiceResponse()


class ReceiverApp:
    """The receiver as an app of the one server bootstrap (health, drain on SIGTERM)."""

    name = "tracestore"
    service_names = (trace_service_pb2.DESCRIPTOR.services_by_name["TraceService"].full_name,)

    def __init__(self, store: SpanStore) -> None:
        self.store = store

    async def start(self, server: grpc.aio.Server) -> None:
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(  # type: ignore[no-untyped-call]
            TraceReceiver(self.store), server
        )

    async def drain(self) -> None:
        return None

    async def stop(self) -> None:
        self.store.close()


def main() -> None:
    owner_only()
    settings = load(RuntimeSettings)
    receiver = load(ReceiverSettings)
    setup_logging("tracestore", settings.log_level)
    store = SpanStore(store_path(settings, receiver))
    # No telemetry of its own (it would trace its own exports) and no token issuer.
    listening = dataclasses.replace(
        settings, listen=receiver.listen, dev_issuer=False, drain_seconds=2.0
    )
    asyncio.run(serve(ReceiverApp(store), listening))


if __name__ == "__main__":
    main()
