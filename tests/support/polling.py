"""Waiting for something a service does in its own time: poll until a deadline."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable


async def eventually(
    check: Callable[[], Awaitable[bool]], seconds: float = 10.0, interval: float = 0.1
) -> None:
    """Polls an async `check()` until it returns True; fails after `seconds`."""
    deadline = time.monotonic() + seconds
    while True:
        if await check():
            return
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(interval)
