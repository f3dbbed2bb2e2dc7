"""Group commit: many callers, one write.

Callers hand in an item and wait for its result; one writer at a time takes every item
waiting (up to `max_batch`) and commits them together, then answers each caller. Under
load one transaction (or one RPC) serves many callers; a caller alone waits only for its
own. Nothing is answered before its batch is committed, so what a caller was told is
durable, and items are committed in the order they were handed in.

Used for the consent audit trail's checks and the HIPAA access log, whose hash chains
take one lock per write.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

logger = logging.getLogger("telemesh.group_commit")

T = TypeVar("T")
R = TypeVar("R")


class GroupCommit(Generic[T, R]):
    def __init__(
        self, commit: Callable[[list[T]], Awaitable[Sequence[R]]], *, max_batch: int = 128
    ) -> None:
        self._commit = commit
        self.max_batch = max_batch
        self._queue: list[tuple[T, asyncio.Future[R]]] = []
        self._writer: asyncio.Task[None] | None = None

    async def submit(self, item: T) -> R:
        """`item`'s result, once the batch holding it is committed (or its error)."""
        result: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._queue.append((item, result))
        if self._writer is None:
            self._writer = asyncio.create_task(self._write_batches())
        return await result

    async def _write_batches(self) -> None:
        try:
            while self._queue:
                batch = [(i, f) for i, f in self._queue[: self.max_batch] if not f.done()]
                del self._queue[: self.max_batch]
                if not batch:
                    continue
                try:
                    results = await self._commit([item for item, _ in batch])
                except Exception as error:
                    logger.warning("a group commit of %d items failed", len(batch), exc_info=True)
                    for _, waiting in batch:
                        if not waiting.done():
                            waiting.set_exception(error)
                    continue
                for (_, waiting), result in zip(batch, results, strict=True):
                    if not waiting.done():
                        waiting.set_result(result)
        finally:
            self._writer = None

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        """Lets the batch being written finish."""
        if self._writer is not None:
            await asyncio.gather(self._writer, return_exceptions=True)
