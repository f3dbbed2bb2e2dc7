"""`make bench`: every suite, or those named: `python -m benchmarks baseline booking`."""

from __future__ import annotations

import asyncio
import importlib
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
]


def main(argv: list[str]) -> int:
    chosen = argv or SUITES
    unknown = [name for name in chosen if name not in SUITES]
    if unknown:
        print(f"unknown suites: {unknown}; known: {SUITES}", file=sys.stderr)
        return 2
    for name in chosen:
        module = importlib.import_module(f"benchmarks.{name}")
        with tempfile.TemporaryDirectory(prefix=f"telemesh-bench-{name}-") as folder:
            started = time.perf_counter()
            print(f"== {name}")
            asyncio.run(module.run(Path(folder)))
            print(f"   ({time.perf_counter() - started:.0f} s)\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
