"""A Telemesh server whose one RPC does nothing: the baseline other figures divide by.

It runs the real bootstrap and interceptor (authentication, tracing, logs, error
mapping), so a ratio to it shows what a service's own work costs.
"""

from __future__ import annotations

from collections.abc import Sequence

import grpc

from telemesh.server import run

NOOP_SERVICE = "telemesh.bench.v1.BenchService"
NOOP_METHOD = f"/{NOOP_SERVICE}/Noop"


class NoopApp:
    name = "session"  # borrows a service name for defaults; TELEMESH_LISTEN decides
    service_names: Sequence[str] = (NOOP_SERVICE,)

    async def start(self, server: grpc.aio.Server) -> None:
        async def noop(request: bytes, context: grpc.aio.ServicerContext[bytes, bytes]) -> bytes:
            return b""

        handler = grpc.method_handlers_generic_handler(
            NOOP_SERVICE,
            {
                "Noop": grpc.unary_unary_rpc_method_handler(
                    noop, request_deserializer=None, response_serializer=None
                )
            },
        )
        server.add_generic_rpc_handlers((handler,))

    async def drain(self) -> None:
        return None

    async def stop(self) -> None:
        return None


if __name__ == "__main__":
    run("bench", lambda _settings: NoopApp())
