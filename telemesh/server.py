"""The one server bootstrap: how every `python -m svc_<name>` runs.

It loads settings, sets up logs and telemetry, applies the service's migrations, and
serves the service on a `grpc.aio` server with the runtime interceptor, the standard
health service and server reflection. On SIGTERM (or SIGINT) it reports NOT_SERVING,
stops taking new calls, lets in-flight calls finish within TELEMESH_DRAIN_SECONDS, then
closes the service's resources and exits.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Protocol

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from telemesh.auth import Authenticator
from telemesh.config import RuntimeSettings, load
from telemesh.file_modes import owner_only
from telemesh.identity.tokens import DevIssuer
from telemesh.interceptor import RuntimeInterceptor
from telemesh.logs import log, setup_logging
from telemesh.telemetry import setup_telemetry

logger = logging.getLogger("telemesh.server")

# Keepalives that keep long server streams (signaling rooms, consent watches) healthy
# through proxies, and let clients ping idle connections.
SERVER_OPTIONS: Sequence[tuple[str, int]] = (
    ("grpc.keepalive_time_ms", 30_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
    ("grpc.max_receive_message_length", 4 * 1024 * 1024),
)


class ServiceApp(Protocol):
    """What a service gives the bootstrap."""

    @property
    def name(self) -> str:
        """ "session", "signaling", "consent" or "billing"."""

    @property
    def service_names(self) -> Sequence[str]:
        """The full gRPC service names it serves."""

    async def start(self, server: grpc.aio.Server) -> None:
        """Opens resources and registers the servicer(s) on `server`."""

    async def drain(self) -> None:
        """SIGTERM arrived: end long streams so that clients reconnect elsewhere."""

    async def stop(self) -> None:
        """In-flight calls are done: close resources."""


def bind_address(server: grpc.aio.Server, address: str) -> str:
    """Binds `HOST:PORT` or `unix:PATH`; returns the address actually bound."""
    if address.startswith("unix:"):
        path = Path(address.removeprefix("unix:").removeprefix("//"))
        path.parent.mkdir(parents=True, exist_ok=True)
        path.unlink(missing_ok=True)  # a stale socket from a crashed run
        server.add_insecure_port(f"unix:{path}")
        return f"unix:{path}"
    port = server.add_insecure_port(address)
    host = address.rsplit(":", 1)[0]
    return f"{host}:{port}"


async def serve(
    app: ServiceApp, settings: RuntimeSettings, stopping: asyncio.Event | None = None
) -> None:
    """Serves `app` until SIGTERM or SIGINT (or `stopping` is set), then drains."""
    if settings.dev_issuer:
        DevIssuer(settings.home)  # makes sure the issuer's key and JWKS exist
    server = grpc.aio.server(
        interceptors=[RuntimeInterceptor(Authenticator(settings))], options=SERVER_OPTIONS
    )
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    await app.start(server)
    reflection.enable_server_reflection(
        (*app.service_names, health.SERVICE_NAME, reflection.SERVICE_NAME), server
    )
    address = bind_address(server, settings.listen_address(app.name))
    if address.startswith("unix:"):
        os.chmod(address.removeprefix("unix:"), 0o600)  # its sidecar runs as the same user
    await server.start()
    for name in ("", *app.service_names):
        await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    log(logger, logging.INFO, "serving", address=address, pid=os.getpid())

    if stopping is None:
        stopping = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stopping.set)
    await stopping.wait()

    log(logger, logging.INFO, "draining", grace_seconds=settings.drain_seconds)
    await health_servicer.enter_graceful_shutdown()
    await app.drain()
    await server.stop(grace=settings.drain_seconds)
    await app.stop()
    log(logger, logging.INFO, "stopped")


def run(name: str, make_app: Callable[[RuntimeSettings], ServiceApp]) -> None:
    """Entry point of `python -m svc_<name>`."""
    owner_only()  # before anything is created under TELEMESH_HOME
    settings = load(RuntimeSettings)
    setup_logging(name, settings.log_level)
    telemetry = setup_telemetry(name)
    try:
        asyncio.run(serve(make_app(settings), settings))
    finally:
        telemetry.shutdown()
