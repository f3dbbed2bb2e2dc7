"""The hash-chained audit trail: appending entries and verifying the chain.

Each entry's hash is SHA-256 over the previous entry's hash (hex) followed by the entry's
canonical form: JSON of its fields with sorted keys and no whitespace, ASCII only, the
time in RFC 3339 with microseconds. Anyone with the entries can recompute it.

Appends lock the head row (`audit_head`) first: on PostgreSQL `SELECT ... FOR UPDATE`
makes concurrent writers, in this process or another replica, queue rather than fork the
chain; on SQLite the write transaction is already exclusive. The head also records the
newest sequence and hash, so that cutting entries off the end is detected too.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from typing import Any, Protocol

from sqlalchemy import insert, select, update
from sqlmodel.ext.asyncio.session import AsyncSession

from svc_consent.models import AUDIT_ENTRIES, AUDIT_HEAD, AUDIT_HEAD_ID, GENESIS_HASH
from telemesh.consent.v1 import consent_pb2


@dataclass(frozen=True)
class AuditDraft:
    """An entry before it has a place in the chain."""

    action: int
    actor_id: str
    actor_role: str
    outcome: str
    patient_id: str = ""
    category: int = 0
    consent_id: str = ""
    consent_version: int = 0


class EntryFields(Protocol):
    """What the canonical form reads: a stored row or a row from a plain query."""

    @property
    def sequence(self) -> int: ...
    @property
    def entry_time(self) -> datetime: ...
    @property
    def action(self) -> int: ...
    @property
    def actor_id(self) -> str: ...
    @property
    def actor_role(self) -> str: ...
    @property
    def patient_id(self) -> str: ...
    @property
    def category(self) -> int: ...
    @property
    def consent_id(self) -> str: ...
    @property
    def consent_version(self) -> int: ...
    @property
    def outcome(self) -> str: ...


def format_instant(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def canonical(entry: EntryFields) -> str:
    """The entry's canonical JSON (its hash covers this and the previous hash)."""
    fields: dict[str, Any] = {
        "sequence": entry.sequence,
        "entry_time": format_instant(entry.entry_time),
        "action": entry.action,
        "actor_id": entry.actor_id,
        "actor_role": entry.actor_role,
        "patient_id": entry.patient_id,
        "category": entry.category,
        "consent_id": entry.consent_id,
        "consent_version": entry.consent_version,
        "outcome": entry.outcome,
    }
    return json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def chain_hash(previous_hash: str, entry: EntryFields) -> str:
    return hashlib.sha256((previous_hash + canonical(entry)).encode("ascii")).hexdigest()


@dataclass
class ChainHead:
    """The newest entry's sequence and hash, as the locked head row holds them."""

    sequence: int
    entry_hash: str


@dataclass(frozen=True)
class ChainEntry:
    """An entry as stored."""

    sequence: int
    entry_time: datetime
    action: int
    actor_id: str
    actor_role: str
    patient_id: str
    category: int
    consent_id: str
    consent_version: int
    outcome: str
    previous_hash: str
    entry_hash: str


async def lock_head(session: AsyncSession) -> ChainHead:
    """The chain's head, locked until the transaction ends. Take it first in every
    transaction that appends, so that all writers lock in one order."""
    connection = await session.connection()
    result = await connection.execute(
        select(AUDIT_HEAD.c.sequence, AUDIT_HEAD.c.entry_hash)
        .where(AUDIT_HEAD.c.id == AUDIT_HEAD_ID)
        .with_for_update()
    )
    row = result.one_or_none()
    if row is None:
        raise RuntimeError("the audit chain has no head row; run the migrations")
    return ChainHead(row.sequence, row.entry_hash)


def _chained(sequence: int, previous: str, now: datetime, draft: AuditDraft) -> ChainEntry:
    unhashed = ChainEntry(
        sequence=sequence,
        entry_time=now,
        action=draft.action,
        actor_id=draft.actor_id[:100],
        actor_role=draft.actor_role[:32],
        patient_id=draft.patient_id[:100],
        category=draft.category,
        consent_id=draft.consent_id[:36],
        consent_version=draft.consent_version,
        outcome=draft.outcome[:200],
        previous_hash=previous,
        entry_hash="",
    )
    return replace(unhashed, entry_hash=chain_hash(previous, unhashed))


async def append(
    session: AsyncSession, head: ChainHead, drafts: Sequence[AuditDraft]
) -> list[ChainEntry]:
    """Appends `drafts` in order after `head` (locked by `lock_head`) and moves it."""
    if not drafts:
        return []
    now = datetime.now(UTC)
    entries: list[ChainEntry] = []
    for draft in drafts:
        entry = _chained(head.sequence + 1, head.entry_hash, now, draft)
        entries.append(entry)
        head.sequence, head.entry_hash = entry.sequence, entry.entry_hash
    connection = await session.connection()
    await connection.execute(insert(AUDIT_ENTRIES), [asdict(entry) for entry in entries])
    await connection.execute(
        update(AUDIT_HEAD)
        .where(AUDIT_HEAD.c.id == AUDIT_HEAD_ID)
        .values(sequence=head.sequence, entry_hash=head.entry_hash)
    )
    return entries


# --- verification -------------------------------------------------------------------


class StoredEntry(EntryFields, Protocol):
    @property
    def previous_hash(self) -> str: ...
    @property
    def entry_hash(self) -> str: ...


@dataclass(frozen=True)
class Verdict:
    """The result of walking the chain: intact, or the first bad place and why."""

    intact: bool
    entries_checked: int
    first_bad_sequence: int = 0
    problem: consent_pb2.AuditProblem.ValueType = consent_pb2.AUDIT_PROBLEM_UNSPECIFIED
    detail: str = ""


def _broken(sequence: int, problem: consent_pb2.AuditProblem.ValueType, detail: str) -> Verdict:
    # The entries before the first bad one are the ones known to be intact.
    return Verdict(False, max(sequence - 1, 0), sequence, problem, detail)


async def verify(
    entries: AsyncIterator[StoredEntry],
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
                consent_pb2.AUDIT_PROBLEM_DELETED,
                f"entry {expected_sequence} is missing; the next entry is {sequence}",
            )
        own_hash_holds = chain_hash(entry.previous_hash, entry) == entry.entry_hash
        if entry.previous_hash != expected_previous:
            if chain_hash(expected_previous, entry) == entry.entry_hash:
                return _broken(
                    sequence,
                    consent_pb2.AUDIT_PROBLEM_EDITED,
                    f"entry {sequence}: its previous_hash was changed",
                )
            found = await locate(entry.previous_hash)
            if found is not None:
                return _broken(
                    sequence,
                    consent_pb2.AUDIT_PROBLEM_REORDERED,
                    f"entry {sequence} chains to entry {found}, not to entry {sequence - 1}",
                )
            if own_hash_holds and sequence > 1:
                # The entry is intact but its predecessor's hash changed: the
                # predecessor was rewritten and re-hashed.
                return _broken(
                    sequence - 1,
                    consent_pb2.AUDIT_PROBLEM_EDITED,
                    f"entry {sequence - 1} was rewritten: entry {sequence} chains to a hash "
                    "that no entry has",
                )
            return _broken(
                sequence,
                consent_pb2.AUDIT_PROBLEM_DELETED,
                f"entry {sequence} chains to a hash that no entry has: entries before it "
                "were removed and the rest renumbered",
            )
        if not own_hash_holds:
            return _broken(
                sequence,
                consent_pb2.AUDIT_PROBLEM_EDITED,
                f"entry {sequence} does not match its hash",
            )
        checked += 1
        expected_sequence += 1
        expected_previous = entry.entry_hash
    last = expected_sequence - 1
    if head is None:
        return _broken(
            last + 1,
            consent_pb2.AUDIT_PROBLEM_DELETED,
            "the chain's head record is missing",
        )
    head_sequence, head_hash = head
    if head_sequence > last:
        return _broken(
            last + 1,
            consent_pb2.AUDIT_PROBLEM_DELETED,
            f"entries {last + 1} to {head_sequence} are missing from the end"
            if head_sequence > last + 1
            else f"entry {head_sequence} is missing from the end",
        )
    if head_sequence < last:
        return _broken(
            head_sequence + 1,
            consent_pb2.AUDIT_PROBLEM_INSERTED,
            f"entries {head_sequence + 1} to {last} follow the recorded head"
            if last > head_sequence + 1
            else f"entry {last} follows the recorded head",
        )
    if head_hash != expected_previous:
        return _broken(
            last,
            consent_pb2.AUDIT_PROBLEM_EDITED,
            f"entry {last} does not match the recorded head",
        )
    return Verdict(True, checked)
