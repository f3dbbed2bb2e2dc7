"""Measuring side by side: closed-loop clients, latency percentiles, ratios.

Timing goals live here, never in tests. Every figure is printed next to a baseline
measured in the same run on the same machine, so ratios hold where absolute numbers
do not.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
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


@contextlib.contextmanager
def profiled(pid: int, name: str, seconds: float) -> Iterator[None]:
    """A py-spy profile of process `pid` while the block runs, when
    `TELEMESH_BENCH_PYSPY=<folder>` asks for one: `<folder>/<name>.svg` (a flame graph;
    `TELEMESH_BENCH_PYSPY_FORMAT=raw` writes collapsed stacks, `speedscope` JSON). A
    profiled run is slower: compare its figures with nothing."""
    folder = os.environ.get("TELEMESH_BENCH_PYSPY")
    if not folder:
        yield
        return
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    kind = os.environ.get("TELEMESH_BENCH_PYSPY_FORMAT", "flamegraph")
    suffix = {"flamegraph": "svg", "speedscope": "json"}.get(kind, "txt")
    output = Path(folder).resolve() / f"{name}.{suffix}"
    output.parent.mkdir(parents=True, exist_ok=True)
    print(f"  (py-spy: pid {pid} -> {output})", flush=True)
    recorder = subprocess.Popen(
        [
            py_spy,
            "record",
            "--pid",
            str(pid),
            "--rate",
            "200",
            "--nonblocking",
            "--duration",
            str(int(seconds + 1)),
            "--format",
            kind,
            "--output",
            str(output),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        yield
    finally:
        _, errors = recorder.communicate(timeout=60)
        if recorder.returncode:
            print(f"  (py-spy failed: {errors.decode().strip()[-300:]})", flush=True)
