"""A service's background work, declared in one place and run by one mechanism.

An app adds its jobs while it registers (`ServiceAppBase.background`): outbox relays,
sweeps, change feeds, consent watchers. The bootstrap starts them once the servicer is
registered and stops them, newest first, when the service stops, on every path (a
normal stop, a failed start). A job is anything with `async start()` and `async stop()`;
`Loop` and `every` make one from a coroutine, and `Spawner` runs fire-and-forget work
that must not outlive the service.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, Protocol, TypeVar

logger = logging.getLogger("telemesh.background")


class BackgroundJob(Protocol):
    async def start(self) -> None: ...

    async def stop(self) -> None: ...


J = TypeVar("J", bound=BackgroundJob)


class Loop:
    """Runs `work()` in a task from start to stop; a failure is logged, not lost."""

    def __init__(self, name: str, work: Callable[[], Awaitable[None]]) -> None:
        self.name = name
        self._work = work
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=self.name)

    async def _run(self) -> None:
        try:
            await self._work()
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("background job %s failed", self.name)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None


def every(name: str, seconds: Callable[[], float], step: Callable[[], Awaitable[None]]) -> Loop:
    """A loop that waits `seconds()` then runs `step()`, forever; a failing step is
    logged and the next one runs on time."""

    async def work() -> None:
        while True:
            await asyncio.sleep(seconds())
            try:
                await step()
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("background step %s failed", name)

    return Loop(name, work)


class Spawner:
    """Fire-and-forget work (reacting to an event without holding up the caller); stop
    cancels whatever is still running."""

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[Any]] = set()

    def spawn(self, work: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.create_task(work)
        self._tasks.add(task)

        def done(finished: asyncio.Task[Any]) -> None:
            self._tasks.discard(finished)
            if not finished.cancelled() and finished.exception() is not None:
                logger.error("background work failed", exc_info=finished.exception())

        task.add_done_callback(done)

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task


class Jobs:
    """The jobs of one service, started in the order added and stopped in reverse."""

    def __init__(self) -> None:
        self._jobs: list[BackgroundJob] = []
        self._started: list[BackgroundJob] = []

    def add(self, job: J) -> J:
        self._jobs.append(job)
        return job

    async def start_all(self) -> None:
        for job in self._jobs:
            if job not in self._started:
                await job.start()
                self._started.append(job)

    async def stop_all(self) -> None:
        while self._started:
            job = self._started.pop()
            try:
                await job.stop()
            except Exception:
                logger.exception("stopping a background job failed")
