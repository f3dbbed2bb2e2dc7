"""Waking watch streams the moment a change commits.

Writers in this process call `notify()` after their commit. Changes committed by another
replica (PostgreSQL) are noticed by `follow_database`, which polls the newest change
sequence every fraction of a second. A stream takes a ticket before it reads the
database and waits on that ticket, so a change that commits between its read and its
wait still wakes it.
"""

from __future__ import annotations

import asyncio
import logging

from svc_consent import ledger
from telemesh.db import Database

logger = logging.getLogger("svc_consent.changes")


class ChangeFeed:
    def __init__(self) -> None:
        self._event = asyncio.Event()
        self.closed = False

    def ticket(self) -> asyncio.Event:
        """Take before reading changes; `wait` on it afterwards."""
        return self._event

    def notify(self) -> None:
        """Something committed: wake every stream waiting on a ticket taken before."""
        event, self._event = self._event, asyncio.Event()
        event.set()

    async def wait(self, ticket: asyncio.Event, seconds: float) -> bool:
        """True when woken, False after `seconds` of quiet."""
        try:
            await asyncio.wait_for(ticket.wait(), seconds)
        except TimeoutError:
            return False
        return True

    def close(self) -> None:
        """The service is draining: wake every stream so that it ends."""
        self.closed = True
        self.notify()

    async def follow_database(self, db: Database, interval: float) -> None:
        """Notifies when the newest change sequence grows (another replica wrote)."""
        known = -1
        while not self.closed:
            try:
                async with db.read() as session:
                    head = await ledger.head_change_sequence(session)
            except Exception:
                logger.warning("reading the newest change failed", exc_info=True)
            else:
                if known >= 0 and head != known:
                    self.notify()
                known = head
            await asyncio.sleep(interval)
