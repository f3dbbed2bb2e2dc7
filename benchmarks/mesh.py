"""The mesh's cost: the no-op RPC direct, through two Envoy sidecars, and through the edge.

One local mesh (the same LocalMesh `telemesh up` runs, real Envoys) with two workloads
running the no-op server: `client`, whose sidecar's outbound socket the benchmark calls
through (plaintext in, mTLS out, RBAC at the other end), and `bench`, the target. Its
allow-list is built here, in the shape of mesh/allowlist.yaml. Figures are printed
beside the no-op baseline (one server, no proxy) measured in the same run.

Aim: at 16 clients the sidecar path keeps at least 0.6 of direct throughput and adds
under 2 ms at p50.
"""

from __future__ import annotations

import os
from pathlib import Path

import grpc

from benchmarks.baseline import NoopTarget, measure_noop
from benchmarks.harness import Result, pooled, row
from benchmarks.noop_server import NOOP_SERVICE
from telemesh.config import RuntimeSettings
from telemesh.identity.tokens import DevIssuer
from telemesh_tools.mesh import envoy
from telemesh_tools.mesh.allowlist import AllowList, Cors, EdgePolicy, ServiceCall
from telemesh_tools.mesh.settings import MeshSettings
from telemesh_tools.stack.local_mesh import LocalMesh

CLIENTS = (1, 16, 64)
SECONDS = 3.0

BENCH_ALLOWLIST = AllowList(
    services={"client": "telemesh.bench.v1.ClientService", "bench": NOOP_SERVICE},
    calls=(ServiceCall("client", "bench", ("Noop",)),),
    edge=EdgePolicy(
        identity="edge",
        issuer="telemesh-dev",
        audiences=("telemesh",),
        jwks_uri="",
        cors=Cors(("https://localhost:5173",), ("authorization", "content-type"), (), 600),
        roles={"patient": {"bench": ("Noop",)}},
    ),
)


def _noop_server(_service: str) -> str:
    return "benchmarks.noop_server"


def _versus(result: Result, direct: Result) -> str:
    """Throughput as a share of direct, and the latency the proxies add."""
    share = result.throughput / direct.throughput if direct.throughput else float("nan")
    return (
        f"  x{share:.2f} of direct, {result.p50_ms - direct.p50_ms:+.2f} ms p50,"
        f" {result.p99_ms - direct.p99_ms:+.2f} ms p99"
    )


async def run(home: Path) -> None:
    print("no-op RPC: direct vs through two mTLS sidecars vs through the edge (TLS, JWT, RBAC)")
    print("(direct is measured before and after the proxied paths; ratios are to both pooled)")
    with NoopTarget(home / "baseline") as target:
        baselines = {clients: await target.measure(clients, SECONDS) for clients in CLIENTS}

    mesh_home = home / "mesh"
    mesh_home.mkdir()
    for key in [k for k in os.environ if k.startswith("OTEL_")]:
        del os.environ[key]  # no tracing: the figures are the proxies' own cost
    mesh = LocalMesh(
        mesh_home,
        RuntimeSettings(home=mesh_home),
        MeshSettings(edge_port=0),
        services=tuple(BENCH_ALLOWLIST.services),
        templates=envoy.render_all(BENCH_ALLOWLIST),
        service_module=_noop_server,
        service_env={"OTEL_TRACES_EXPORTER": "none", "TELEMESH_LOG_LEVEL": "WARNING"},
    )
    mesh.start()
    try:
        token = DevIssuer(mesh_home).mint("bench-patient", "patient")
        endpoints = mesh.endpoints()
        socket = endpoints["services"]["bench"]["socket"]
        outbound = endpoints["services"]["client"]["outbound"]
        credentials = grpc.ssl_channel_credentials(mesh.ca.bundle_path.read_bytes())
        edge_target = f"localhost:{mesh.layout.edge_port}"
        for clients in CLIENTS:
            print(row(baselines[clients]))
            async with grpc.aio.insecure_channel(socket) as channel:
                before = await measure_noop("direct", channel, token, clients, SECONDS)
            async with grpc.aio.insecure_channel(outbound) as channel:
                sidecars = await measure_noop(
                    "through two sidecars (mTLS)", channel, token, clients, SECONDS
                )
            async with grpc.aio.secure_channel(edge_target, credentials) as channel:
                edge = await measure_noop(
                    "through the edge (TLS+JWT+RBAC, mTLS)", channel, token, clients, SECONDS
                )
            async with grpc.aio.insecure_channel(socket) as channel:
                after = await measure_noop("direct", channel, token, clients, SECONDS)
            direct = pooled("direct (before and after, pooled)", before, after)
            print(row(direct, baselines[clients]))
            print(row(sidecars) + _versus(sidecars, direct))
            print(row(edge) + _versus(edge, direct))
    finally:
        mesh.stop()
