"""Append-only, hash-chained logs: appending entries and verifying the chain.

One implementation for every tamper-evident log of Telemesh (the consent audit trail,
the HIPAA access log). A log is two tables: its entries (`sequence`, `entry_time`,
`previous_hash`, `entry_hash` and the log's own content columns) and a one-row head.

Each entry's hash is SHA-256 over the previous entry's hash (hex) followed by the entry's
canonical form: JSON of `sequence`, `entry_time` and the content fields with sorted keys
and no whitespace, ASCII only, the time in RFC 3339 with microseconds. Anyone with the
entries can recompute it. The first entry's previous hash is 64 zeros.

Appends lock the head row first: on PostgreSQL `SELECT ... FOR UPDATE` makes concurrent
writers, in this process or another replica, queue rather than fork the chain; on SQLite
the write transaction is already exclusive. The head also records the newest sequence and
hash, so that cutting entries off the end is detected too.
"""

from __future__ import annotations

import enum
import hashlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Table, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlmodel.ext.asyncio.session import AsyncSession

from telemesh.db import Database

GENESIS_HASH = "0" * 64
VERIFY_PAGE = 2000


class ChainProblem(enum.IntEnum):
    """What is wrong at the first bad entry (the numbers of the contract's enums)."""

    NONE = 0
    EDITED = 1  # an entry's content no longer matches its hash
    DELETED = 2  # an entry is missing
    REORDERED = 3  # an entry chains to another entry than its predecessor
    INSERTED = 4  # entries follow the recorded head: added outside the service


@dataclass(frozen=True)
class Verdict:
    """The result of walking the chain: intact, or the first bad place and why."""

    intact: bool
    entries_checked: int
    first_bad_sequence: int = 0
    problem: ChainProblem = ChainProblem.NONE
    detail: str = ""

    def answer_fields(self) -> dict[str, Any]:
        """The fields of a Verify*Response (VerifyAuditTrail, VerifyAccessLog: the
        contract numbers both problem enums like `ChainProblem`)."""
        return {
            "intact": self.intact,
            "entries_checked": self.entries_checked,
            "first_bad_sequence": self.first_bad_sequence,
            "problem": int(self.problem),
            "detail": self.detail,
        }


def _broken(sequence: int, problem: ChainProblem, detail: str) -> Verdict:
    # The entries before the first bad one are the ones known to be intact.
    return Verdict(False, max(sequence - 1, 0), sequence, problem, detail)


@dataclass
class ChainHead:
    """The newest entry's sequence and hash, as the locked head row holds them."""

    sequence: int
    entry_hash: str


def format_instant(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class HashChain:
    """One log: its tables, its content fields and their length limits."""

    def __init__(
        self,
        entries: Table,
        head: Table,
        fields: Sequence[str],
        *,
        limits: Mapping[str, int] | None = None,
        head_id: int = 1,
    ) -> None:
        self.entries = entries
        self.head = head
        self.fields = tuple(fields)
        self.limits = dict(limits or {})
        self.head_id = head_id

    # --- hashing -------------------------------------------------------------------

    def canonical(self, entry: Any) -> str:
        """The entry's canonical JSON (its hash covers this and the previous hash);
        `entry` is a stored row, a dataclass or a mapping."""

        def get(name: str) -> Any:
            return entry[name] if isinstance(entry, Mapping) else getattr(entry, name)

        content: dict[str, Any] = {name: get(name) for name in self.fields}
        content["sequence"] = get("sequence")
        content["entry_time"] = format_instant(get("entry_time"))
        return json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=True)

    def hash(self, previous_hash: str, entry: Any) -> str:
        return hashlib.sha256((previous_hash + self.canonical(entry)).encode("ascii")).hexdigest()

    # --- appending -----------------------------------------------------------------

    async def lock_head(self, session: AsyncSession) -> ChainHead:
        """The chain's head, locked until the transaction ends. Take it first in every
        transaction that appends, so that all writers lock in one order."""
        connection = await session.connection()
        result = await connection.execute(
            select(self.head.c.sequence, self.head.c.entry_hash)
            .where(self.head.c.id == self.head_id)
            .with_for_update()
        )
        row = result.one_or_none()
        if row is None:
            raise RuntimeError(f"{self.head.name} has no head row; run the migrations")
        return ChainHead(row.sequence, row.entry_hash)

    def _chained(
        self, sequence: int, previous: str, now: datetime, draft: Mapping[str, Any]
    ) -> dict[str, Any]:
        entry = {name: draft[name] for name in self.fields}
        for name, limit in self.limits.items():
            entry[name] = entry[name][:limit]
        entry.update(sequence=sequence, entry_time=now, previous_hash=previous)
        entry["entry_hash"] = self.hash(previous, entry)
        return entry

    async def append(
        self, session: AsyncSession, head: ChainHead, drafts: Sequence[Mapping[str, Any]]
    ) -> list[dict[str, Any]]:
        """Appends `drafts` (content fields) in order after `head` (locked by
        `lock_head`) and moves the head; returns the stored entries."""
        if not drafts:
            return []
        now = datetime.now(UTC)
        stored: list[dict[str, Any]] = []
        for draft in drafts:
            entry = self._chained(head.sequence + 1, head.entry_hash, now, draft)
            stored.append(entry)
            head.sequence, head.entry_hash = entry["sequence"], entry["entry_hash"]
        connection = await session.connection()
        await connection.execute(insert(self.entries), stored)
        await connection.execute(
            update(self.head)
            .where(self.head.c.id == self.head_id)
            .values(sequence=head.sequence, entry_hash=head.entry_hash)
        )
        return stored

    # --- verification --------------------------------------------------------------

    async def verify(
        self,
        entries: AsyncIterator[Any],
        head: tuple[int, str] | None,
        locate: Callable[[str], Awaitable[int | None]],
    ) -> Verdict:
        """Walks `entries` (in sequence order) and names the first bad one.

        `head` is the recorded (sequence, hash) of the newest entry; `locate(hash)` finds
        the sequence of the entry with that hash, which tells an entry that was moved
        (its predecessor exists elsewhere) from one whose predecessor is gone.
        """
        expected_sequence = 1
        expected_previous = GENESIS_HASH
        checked = 0
        async for entry in entries:
            sequence = entry.sequence
            if sequence != expected_sequence:
                return _broken(
                    expected_sequence,
                    ChainProblem.DELETED,
                    f"entry {expected_sequence} is missing; the next entry is {sequence}",
                )
            own_hash_holds = self.hash(entry.previous_hash, entry) == entry.entry_hash
            if entry.previous_hash != expected_previous:
                return await self._misplaced(entry, expected_previous, own_hash_holds, locate)
            if not own_hash_holds:
                return _broken(
                    sequence, ChainProblem.EDITED, f"entry {sequence} does not match its hash"
                )
            checked += 1
            expected_sequence += 1
            expected_previous = entry.entry_hash
        return _against_head(expected_sequence - 1, expected_previous, checked, head)

    async def _misplaced(
        self,
        entry: Any,
        expected_previous: str,
        own_hash_holds: bool,
        locate: Callable[[str], Awaitable[int | None]],
    ) -> Verdict:
        """Why an entry does not chain to its predecessor."""
        sequence = entry.sequence
        if self.hash(expected_previous, entry) == entry.entry_hash:
            return _broken(
                sequence, ChainProblem.EDITED, f"entry {sequence}: its previous_hash was changed"
            )
        found = await locate(entry.previous_hash)
        if found is not None:
            return _broken(
                sequence,
                ChainProblem.REORDERED,
                f"entry {sequence} chains to entry {found}, not to entry {sequence - 1}",
            )
        if own_hash_holds and sequence > 1:
            # The entry is intact but its predecessor's hash changed: the predecessor
            # was rewritten and re-hashed.
            return _broken(
                sequence - 1,
                ChainProblem.EDITED,
                f"entry {sequence - 1} was rewritten: entry {sequence} chains to a hash "
                "that no entry has",
            )
        return _broken(
            sequence,
            ChainProblem.DELETED,
            f"entry {sequence} chains to a hash that no entry has: entries before it "
            "were removed and the rest renumbered",
        )

    async def _pages(self, connection: AsyncConnection) -> AsyncIterator[Any]:
        after = 0
        while True:
            result = await connection.execute(
                select(self.entries)
                .where(self.entries.c.sequence > after)
                .order_by(self.entries.c.sequence)
                .limit(VERIFY_PAGE)
            )
            rows = result.all()
            for row in rows:
                yield row
            if len(rows) < VERIFY_PAGE:
                return
            after = rows[-1].sequence

    async def verify_stored(self, db: Database) -> Verdict:
        """Walks the stored chain end to end in one consistent snapshot (SQLite's read
        transaction; REPEATABLE READ on PostgreSQL), so that appends running meanwhile
        neither look like tampering nor hide it, page by page by sequence."""
        async with db.read() as session:
            options = {} if db.sqlite else {"isolation_level": "REPEATABLE READ"}
            connection = await session.connection(execution_options=options)
            result = await connection.execute(
                select(self.head.c.sequence, self.head.c.entry_hash).where(
                    self.head.c.id == self.head_id
                )
            )
            row = result.one_or_none()
            recorded = (row.sequence, row.entry_hash) if row is not None else None

            async def locate(entry_hash: str) -> int | None:
                found = await connection.execute(
                    select(self.entries.c.sequence).where(self.entries.c.entry_hash == entry_hash)
                )
                sequence: int | None = found.scalar_one_or_none()
                return sequence

            return await self.verify(self._pages(connection), recorded, locate)


def _against_head(last: int, last_hash: str, checked: int, head: tuple[int, str] | None) -> Verdict:
    """The walk's end compared with the recorded head (entries cut off or added)."""
    if head is None:
        return _broken(last + 1, ChainProblem.DELETED, "the chain's head record is missing")
    head_sequence, head_hash = head
    if head_sequence > last:
        return _broken(
            last + 1,
            ChainProblem.DELETED,
            f"entries {last + 1} to {head_sequence} are missing from the end"
            if head_sequence > last + 1
            else f"entry {head_sequence} is missing from the end",
        )
    if head_sequence < last:
        return _broken(
            head_sequence + 1,
            ChainProblem.INSERTED,
            f"entries {head_sequence + 1} to {last} follow the recorded head"
            if last > head_sequence + 1
            else f"entry {last} follows the recorded head",
        )
    if head_hash != last_hash:
        return _broken(last, ChainProblem.EDITED, f"entry {last} does not match the recorded head")
    return Verdict(True, checked)
