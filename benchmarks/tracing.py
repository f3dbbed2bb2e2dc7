"""What tracing costs: booking throughput with tracing on (every span exported by OTLP
to the local trace receiver) and off (OTEL_TRACES_SAMPLER=always_off), in one run.

The two configurations alternate (on, off, on, off) so that a machine whose load
drifts during the run weighs on both alike.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

from benchmarks.booking import _bookings
from benchmarks.harness import Result, row
from telemesh_tools.stack.local_mesh import TraceReceiver
from tests.support.harness import Stack

CLIENTS = 16
ROUNDS = 5


async def run(home: Path) -> None:
    print(f"tracing cost: BookVisit at {CLIENTS} clients (PostgreSQL), tracing on vs off")
    receiver = TraceReceiver.local(home)  # the one `telemesh up` runs
    receiver.process.start().wait_ready()
    configs = {
        "on": {
            "OTEL_TRACES_EXPORTER": "otlp",
            "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.otlp_endpoint,
        },
        "off": {"OTEL_TRACES_SAMPLER": "always_off"},
    }
    results: dict[str, list[Result]] = {"on": [], "off": []}
    try:
        for round_ in range(ROUNDS):
            for name, env in configs.items():
                folder = home / f"{name}-{round_}"
                folder.mkdir()
                stack = Stack(folder, "postgres", {**env, "OTEL_METRICS_EXPORTER": "none"})
                with contextlib.closing(stack):
                    stack.start("session")
                    result = await _bookings(stack, CLIENTS, f"tracing {name}")
                results[name].append(result)
                print(row(result))
    finally:
        receiver.process.stop()
    # Each round's on/off pair ran back to back: the median of their ratios is the
    # figure least moved by the machine's drifting load.
    ratios = sorted(
        on.throughput / off.throughput
        for on, off in zip(results["on"], results["off"], strict=True)
        if off.throughput
    )
    median = ratios[len(ratios) // 2]
    print(
        f"  tracing on keeps x{median:.2f} of the throughput with tracing off"
        f" (median of {len(ratios)} paired rounds; cost {100 * (1 - median):.1f}%;"
        f" rounds ranged x{ratios[0]:.2f}..x{ratios[-1]:.2f})"
    )
