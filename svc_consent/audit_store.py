"""Reading the stored audit trail: pages of entries, and verifying the whole chain.

Verification reads one consistent snapshot (SQLite's read transaction; REPEATABLE READ
on PostgreSQL), so that appends running meanwhile neither look like tampering nor hide
it, and walks it in pages by sequence, never holding the whole trail in memory.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence

from sqlalchemy import select as core_select
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from svc_consent import audit_chain
from svc_consent.audit_chain import StoredEntry, Verdict
from svc_consent.models import AUDIT_ENTRIES, AUDIT_HEAD_ID, AuditEntryRow, AuditHeadRow
from telemesh.db import Database

VERIFY_PAGE = 2000


async def list_entries(
    session: AsyncSession, patient_id: str, after_sequence: int, limit: int
) -> Sequence[AuditEntryRow]:
    statement = (
        select(AuditEntryRow)
        .where(col(AuditEntryRow.sequence) > after_sequence)
        .order_by(col(AuditEntryRow.sequence))
        .limit(limit)
    )
    if patient_id:
        statement = statement.where(AuditEntryRow.patient_id == patient_id)
    result = await session.exec(statement)
    return result.all()


async def _pages(connection: AsyncConnection) -> AsyncIterator[StoredEntry]:
    after = 0
    while True:
        result = await connection.execute(
            core_select(AUDIT_ENTRIES)
            .where(AUDIT_ENTRIES.c.sequence > after)
            .order_by(AUDIT_ENTRIES.c.sequence)
            .limit(VERIFY_PAGE)
        )
        rows = result.all()
        for row in rows:
            yield row
        if len(rows) < VERIFY_PAGE:
            return
        after = rows[-1].sequence


async def verify_stored_chain(db: Database) -> Verdict:
    """Walks the stored chain end to end (see audit_chain.verify)."""
    async with db.read() as session:
        # SQLite's read transaction is a snapshot already.
        options = {} if db.sqlite else {"isolation_level": "REPEATABLE READ"}
        connection = await session.connection(execution_options=options)
        head = await session.get(AuditHeadRow, AUDIT_HEAD_ID)
        recorded = (head.sequence, head.entry_hash) if head is not None else None

        async def locate(entry_hash: str) -> int | None:
            result = await connection.execute(
                core_select(AUDIT_ENTRIES.c.sequence).where(
                    AUDIT_ENTRIES.c.entry_hash == entry_hash
                )
            )
            found: int | None = result.scalar_one_or_none()
            return found

        return await audit_chain.verify(_pages(connection), recorded, locate)
