"""A real Prometheus scrapes a service during visits and answers for the booking RPC's
error rate and latency histogram."""

from __future__ import annotations

import asyncio
import json
import shutil
from collections.abc import Callable
from pathlib import Path

import grpc
import pytest

from telemesh.session.v1 import session_pb2
from telemesh_tools.stack.process import ManagedProcess, free_port
from tests.support.flows import Flows, rid, ts
from tests.support.harness import Stack
from tests.support.prometheus import prometheus, query

pytestmark = pytest.mark.skipif(
    shutil.which("prometheus") is None, reason="Debian's prometheus is not installed (make setup)"
)

ERROR_RATE = (
    'sum(rate(rpc_server_duration_milliseconds_count{rpc_method="BookVisit",'
    'rpc_grpc_status_code!="0"}[1m])) / '
    'sum(rate(rpc_server_duration_milliseconds_count{rpc_method="BookVisit"}[1m]))'
)
P99 = (
    "histogram_quantile(0.99, sum by (le) "
    '(rate(rpc_server_duration_milliseconds_bucket{rpc_method="BookVisit"}[1m])))'
)


def start_prometheus(home: Path, targets: list[str]) -> tuple[ManagedProcess, str]:
    return prometheus(
        home,
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
        "scrape_configs:\n  - job_name: telemesh\n    static_configs:\n"
        f"      - targets: {json.dumps(targets)}\n",
    )


async def test_prometheus_scrapes_the_booking_rpc_error_rate_and_latency(
    make_stack: Callable[..., Stack], home: Path
) -> None:
    metrics_port = free_port()
    stack = make_stack("sqlite", "session", TELEMESH_METRICS_PORT=str(metrics_port))
    prometheus, base = start_prometheus(home, [f"127.0.0.1:{metrics_port}"])
    prometheus.start().wait_ready()
    flows = Flows(stack)
    try:
        error_rate: list[dict[str, object]] = []
        p99: list[dict[str, object]] = []
        for _ in range(60):  # traffic goes on while Prometheus scrapes every second
            visit = await flows.book()
            with pytest.raises(grpc.aio.AioRpcError):  # the slot is taken now: an error
                await flows.session.BookVisit(
                    session_pb2.BookVisitRequest(
                        request_id=rid(),
                        clinician_id=visit.clinician_id,
                        patient_id=visit.patient_id,
                        start_time=ts(visit.start_time),
                    ),
                    metadata=visit.patient,
                )
            await asyncio.sleep(0.3)
            error_rate = [r for r in query(base, ERROR_RATE) if r["value"][1] != "NaN"]
            p99 = [r for r in query(base, P99) if r["value"][1] != "NaN"]
            if error_rate and p99:
                break
        assert error_rate, "Prometheus answers the booking error rate"
        value = float(error_rate[0]["value"][1])  # type: ignore[index]
        assert 0 < value < 1, "as many bookings failed as succeeded"
        assert p99, "Prometheus answers the booking latency histogram"
        assert float(p99[0]["value"][1]) > 0  # type: ignore[index]
        booked = query(base, "telemesh_visits_booked_total")
        assert booked, "the product's own counters are scraped too"
    finally:
        prometheus.stop()
        await flows.close()
