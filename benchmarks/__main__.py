"""`make bench`: every suite, or those named: `python -m benchmarks baseline booking`."""

from __future__ import annotations

import asyncio
import importlib
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# Suites in the order they run; each module has `async def run(home: Path) -> None`.
SUITES = [
    "baseline",
    "booking",
    "billing",
    "outbox",
    "tracing",
    "consent_check",
    "signaling",
    "mesh",
    "fleet",
]


def run_suite(name: str) -> None:
    module = importlib.import_module(f"benchmarks.{name}")
    with tempfile.TemporaryDirectory(prefix=f"telemesh-bench-{name}-") as folder:
        asyncio.run(module.run(Path(folder)))


def main(argv: list[str]) -> int:
    if argv[:1] == ["--one"]:
        run_suite(argv[1])
        return 0
    chosen = argv or SUITES
    unknown = [name for name in chosen if name not in SUITES]
    if unknown:
        print(f"unknown suites: {unknown}; known: {SUITES}", file=sys.stderr)
        return 2
    failed = []
    for name in chosen:
        # Each suite in a process of its own: no state (event loops, gRPC pollers,
        # telemetry providers) carries from one to the next.
        started = time.perf_counter()
        print(f"== {name}", flush=True)
        result = subprocess.run([sys.executable, "-m", "benchmarks", "--one", name])
        if result.returncode:
            failed.append(name)
        print(f"   ({time.perf_counter() - started:.0f} s)\n", flush=True)
    if failed:
        print(f"failed suites: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
