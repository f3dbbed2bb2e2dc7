"""Reading the stored audit trail: pages of entries, and verifying the whole chain."""

from __future__ import annotations

from collections.abc import Sequence

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from svc_consent import audit_chain
from svc_consent.models import AuditEntryRow
from telemesh.db import Database
from telemesh.hash_chain import Verdict


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


async def verify_stored_chain(db: Database) -> Verdict:
    """Walks the stored chain end to end (see telemesh.hash_chain)."""
    return await audit_chain.CHAIN.verify_stored(db)
