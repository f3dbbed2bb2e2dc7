"""Billing: direct RecordVisitCompletion throughput and latency, as ratios to the no-op
baseline measured in the same run.

Every call records a distinct completed visit (a new charge: validation, coding,
pricing, one write transaction), as the outbox relay's deliveries do. The outbox drain
rate can be printed beside it: start a `BillingTarget`, drain into its address, and
divide by `await direct_completions(...)`.
"""

from __future__ import annotations

import itertools
import os
import uuid
from datetime import UTC, datetime
from pathlib import Path

import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from benchmarks.baseline import NoopTarget
from benchmarks.harness import Result, measure, profiled, python_process, row
from telemesh.billing.v1 import billing_pb2, billing_pb2_grpc
from telemesh.identity.tokens import DevIssuer
from telemesh_tools.stack.process import ManagedProcess, free_port
from tests.support.harness import database_url

CLIENTS = (1, 16)
BACKENDS = tuple(os.environ.get("TELEMESH_BENCH_BACKENDS", "sqlite,postgres").split(","))


class BillingTarget:
    """A running `python -m svc_billing` (SQLite in `home` unless `database_url` says
    otherwise) and the session service's token, which may record completions."""

    def __init__(self, home: Path, database_url: str | None = None) -> None:
        self.home = home
        self.address = f"127.0.0.1:{free_port()}"
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("TELEMESH_", "OTEL_"))},
            "TELEMESH_HOME": str(home),
            "TELEMESH_LISTEN": self.address,
            "OTEL_TRACES_EXPORTER": "none",
            "OTEL_METRICS_EXPORTER": "none",
        }
        if database_url:
            env["TELEMESH_DATABASE_URL"] = database_url
        self.process: ManagedProcess = python_process(
            "billing", "svc_billing", env, home / "billing.log", self.address
        )
        self.token = ""

    def __enter__(self) -> BillingTarget:
        self.process.start().wait_ready()
        self.token = DevIssuer(self.home).mint("session", "service")
        return self

    def __exit__(self, *_exc: object) -> None:
        self.process.stop()


def completion_request(visit_id: str) -> billing_pb2.RecordVisitCompletionRequest:
    """A typical completion: an established patient, 25 connected minutes at home."""
    now = datetime.now(UTC)
    stamp = Timestamp()
    stamp.FromDatetime(now)
    return billing_pb2.RecordVisitCompletionRequest(
        visit_id=visit_id,
        patient_id="bench-patient",
        clinician_id="bench-clinician",
        practice_id="bench-practice",
        complete_time=stamp,
        service_date=now.date().isoformat(),
        connected_seconds=1500,
        patient_location=billing_pb2.PATIENT_LOCATION_HOME,
        diagnosis_codes=["J06.9"],
    )


async def direct_completions(
    address: str,
    token: str,
    clients: int,
    seconds: float = 4.0,
    name: str = "RecordVisitCompletion (direct)",
) -> Result:
    """`clients` closed loops calling RecordVisitCompletion at `address`, each call a
    distinct visit; a repeated visit id would measure the replay path instead."""
    run_id = uuid.uuid4().hex[:8]
    numbers = itertools.count()
    metadata = (("authorization", f"Bearer {token}"),)
    async with grpc.aio.insecure_channel(address) as channel:
        stub = billing_pb2_grpc.BillingServiceStub(channel)

        async def call(_client: int, _n: int) -> None:
            request = completion_request(f"bench-{run_id}-{next(numbers)}")
            reply = await stub.RecordVisitCompletion(request, metadata=metadata, timeout=30)
            if not reply.created:
                raise RuntimeError("a distinct visit was not created")

        return await measure(name, call, clients, seconds)


def latency_ratios(result: Result, baseline: Result) -> str:
    return (
        f"  {'':<38} latency vs baseline: p50 x{result.p50_ms / baseline.p50_ms:.2f}"
        f"  p99 x{result.p99_ms / baseline.p99_ms:.2f}"
    )


async def run(home: Path) -> None:
    print("billing: RecordVisitCompletion of distinct visits, against the no-op RPC")
    with NoopTarget(home / "noop") as noop:
        baselines = {clients: await noop.measure(clients) for clients in CLIENTS}
    for clients in CLIENTS:
        print(row(baselines[clients]))
    for backend in BACKENDS:
        (home / backend).mkdir()
        with (
            database_url(backend, home / backend, "billing") as url,
            BillingTarget(home / backend, url) as billing,
        ):
            for clients in CLIENTS:
                with profiled(billing.process.pid, f"billing-{backend}-{clients}", 4.0):
                    result = await direct_completions(
                        billing.address,
                        billing.token,
                        clients,
                        name=f"RecordVisitCompletion ({backend})",
                    )
                print(row(result, baselines[clients]))
                print(latency_ratios(result, baselines[clients]))
