"""Measuring side by side: closed-loop clients, latency percentiles, ratios.

Timing goals live here, never in tests. Every figure is printed next to a baseline
measured in the same run on the same machine, so ratios hold where absolute numbers
do not.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

from telemesh_tools.stack.process import ManagedProcess, module_process

REPO = Path(__file__).resolve().parent.parent


def percentile(samples: list[float], fraction: float) -> float:
    if not samples:
        return float("nan")
    ordered = sorted(samples)
    index = min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))
    return ordered[index]


@dataclass(frozen=True)
class Result:
    name: str
    clients: int
    calls: int
    errors: int
    seconds: float
    latencies_ms: list[float] = field(repr=False)  # of every measured call

    @property
    def throughput(self) -> float:
        return self.calls / self.seconds if self.seconds else 0.0

    @property
    def p50_ms(self) -> float:
        return percentile(self.latencies_ms, 0.50)

    @property
    def p99_ms(self) -> float:
        return percentile(self.latencies_ms, 0.99)


def pooled(name: str, *results: Result) -> Result:
    """Measurements of one path taken at different times as one: calls and time added
    up, percentiles over all their calls' latencies."""
    return Result(
        name,
        results[0].clients,
        sum(r.calls for r in results),
        sum(r.errors for r in results),
        sum(r.seconds for r in results),
        [latency for r in results for latency in r.latencies_ms],
    )


async def measure(
    name: str,
    call: Callable[[int, int], Awaitable[None]],
    clients: int,
    seconds: float = 4.0,
    warmup: float = 0.5,
) -> Result:
    """Runs `clients` closed loops of `call(client, n)` for `seconds` after a warm-up."""
    latencies: list[float] = []
    errors = 0
    start_measuring = time.perf_counter() + warmup
    stop_at = start_measuring + seconds

    async def loop(client: int) -> None:
        nonlocal errors
        n = 0
        while True:
            began = time.perf_counter()
            if began >= stop_at:
                return
            try:
                await call(client, n)
            except Exception:
                if began >= start_measuring:
                    errors += 1
                n += 1
                continue
            ended = time.perf_counter()
            if began >= start_measuring and ended <= stop_at:
                latencies.append((ended - began) * 1000)
            n += 1

    await asyncio.gather(*(loop(i) for i in range(clients)))
    return Result(name, clients, len(latencies), errors, seconds, latencies)


def row(result: Result, baseline: Result | None = None) -> str:
    ratio = ""
    if baseline is not None and baseline.throughput:
        ratio = f"  x{result.throughput / baseline.throughput:.2f} of baseline"
    return (
        f"  {result.name:<38} {result.clients:>3} clients  {result.throughput:>8.0f} calls/s"
        f"  p50 {result.p50_ms:>7.2f} ms  p99 {result.p99_ms:>7.2f} ms"
        f"  errors {result.errors}{ratio}"
    )


def summary(samples: list[float]) -> str:
    return (
        f"n={len(samples)} p50={percentile(samples, 0.5):.2f} "
        f"p99={percentile(samples, 0.99):.2f} mean={statistics.fmean(samples):.2f}"
    )


def python_process(
    name: str, module: str, env: dict[str, str], log: Path, address: str
) -> ManagedProcess:
    """`python -m module` in the repository, ready when its gRPC health says SERVING."""
    return module_process(name, module, env, log, address, cwd=REPO)
