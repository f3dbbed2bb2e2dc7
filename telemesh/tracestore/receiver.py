"""The local trace receiver: an OTLP/gRPC TraceService that stores what it receives.

`telemesh up` runs it (`python -m telemesh.tracestore.receiver`); services and Envoys
export to it with the standard OTLP exporter (OTEL_EXPORTER_OTLP_ENDPOINT). It stores
spans in $TELEMESH_HOME/traces.db for `telemesh trace`.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc

from telemesh.config import RuntimeSettings, load, setting
from telemesh.logs import log, setup_logging
from telemesh.server import bind_address
from telemesh.tracestore.store import SpanStore

logger = logging.getLogger("telemesh.tracestore")


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


async def serve(address: str, store: SpanStore, stopping: asyncio.Event) -> None:
    server = grpc.aio.server(options=[("grpc.max_receive_message_length", 32 * 1024 * 1024)])
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(  # type: ignore[no-untyped-call]
        TraceReceiver(store), server
    )
    checker = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(checker, server)
    bound = bind_address(server, address)
    await server.start()
    await checker.set("", health_pb2.HealthCheckResponse.SERVING)
    log(logger, logging.INFO, "receiving traces", address=bound)
    await stopping.wait()
    await server.stop(grace=2)


def main() -> None:
    settings = load(RuntimeSettings)
    receiver = load(ReceiverSettings)
    setup_logging("tracestore", settings.log_level)
    store = SpanStore(store_path(settings, receiver))

    async def run() -> None:
        stopping = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stopping.set)
        await serve(receiver.listen, store, stopping)

    try:
        asyncio.run(run())
    finally:
        store.close()


if __name__ == "__main__":
    main()
