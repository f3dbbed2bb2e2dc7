"""The no-op RPC baseline: the same runtime, no work. Other suites divide by it."""

from __future__ import annotations

import os
from pathlib import Path

import grpc

from benchmarks.harness import Result, measure, python_process, row
from benchmarks.noop_server import NOOP_METHOD
from telemesh.identity.tokens import DevIssuer
from telemesh_tools.stack.process import free_port


class NoopTarget:
    """A running no-op server and a client for it."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.address = f"127.0.0.1:{free_port()}"
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("TELEMESH_", "OTEL_"))},
            "TELEMESH_HOME": str(home),
            "TELEMESH_LISTEN": self.address,
            "OTEL_TRACES_EXPORTER": "none",
        }
        self.process = python_process(
            "noop", "benchmarks.noop_server", env, home / "noop.log", self.address
        )
        self.token = ""

    def __enter__(self) -> NoopTarget:
        self.process.start().wait_ready()
        self.token = DevIssuer(self.home).mint("bench-patient", "patient")
        return self

    def __exit__(self, *_exc: object) -> None:
        self.process.stop()

    async def measure(self, clients: int, seconds: float = 4.0) -> Result:
        async with grpc.aio.insecure_channel(self.address) as channel:
            return await measure_noop("no-op RPC (baseline)", channel, self.token, clients, seconds)


async def measure_noop(
    name: str, channel: grpc.aio.Channel, token: str, clients: int, seconds: float = 4.0
) -> Result:
    """`clients` closed loops of the no-op RPC over `channel`, as user `token`."""
    noop: grpc.aio.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(
        NOOP_METHOD, request_serializer=None, response_deserializer=None
    )
    metadata = (("authorization", f"Bearer {token}"),)

    async def call(_client: int, _n: int) -> None:
        await noop(b"", metadata=metadata)

    return await measure(name, call, clients, seconds)


async def run(home: Path) -> None:
    print("no-op RPC baseline (real bootstrap and interceptor, one server process)")
    with NoopTarget(home) as target:
        for clients in (1, 16, 64):
            print(row(await target.measure(clients)))
