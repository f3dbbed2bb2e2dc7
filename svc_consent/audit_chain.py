"""The consent audit trail as a hash chain (the runtime's `telemesh.hash_chain`).

Every change, every check and every refused attempt is one entry; its canonical form
covers `sequence`, `entry_time`, `action`, `actor_id`, `actor_role`, `patient_id`,
`category`, `consent_id`, `consent_version` and `outcome` (the contract's AuditEntry says
the same to anyone who recomputes the hashes).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from sqlmodel.ext.asyncio.session import AsyncSession

from svc_consent.models import AUDIT_ENTRIES, AUDIT_HEAD, AUDIT_HEAD_ID
from telemesh.hash_chain import ChainHead, HashChain, Verdict, format_instant

__all__ = [
    "CHAIN",
    "AuditDraft",
    "ChainEntry",
    "ChainHead",
    "Verdict",
    "append",
    "chain_hash",
    "format_instant",
    "lock_head",
    "verify",
]

CHAIN = HashChain(
    AUDIT_ENTRIES,
    AUDIT_HEAD,
    (
        "action",
        "actor_id",
        "actor_role",
        "patient_id",
        "category",
        "consent_id",
        "consent_version",
        "outcome",
    ),
    limits={"actor_id": 100, "actor_role": 32, "patient_id": 100, "consent_id": 36, "outcome": 200},
    head_id=AUDIT_HEAD_ID,
)


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


def chain_hash(previous_hash: str, entry: Any) -> str:
    return CHAIN.hash(previous_hash, entry)


async def lock_head(session: AsyncSession) -> ChainHead:
    return await CHAIN.lock_head(session)


async def append(
    session: AsyncSession, head: ChainHead, drafts: Sequence[AuditDraft]
) -> list[dict[str, Any]]:
    """Appends `drafts` in order after `head` (locked by `lock_head`) and moves it."""
    return await CHAIN.append(session, head, [asdict(draft) for draft in drafts])


async def verify(
    entries: AsyncIterator[Any],
    head: tuple[int, str] | None,
    locate: Callable[[str], Awaitable[int | None]],
) -> Verdict:
    return await CHAIN.verify(entries, head, locate)
