"""The HIPAA access log, kept here for every service (telemesh.access_log): appending
accesses (this service's own and those other services send), listing one patient's,
verifying the chain."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC
from typing import Any

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from svc_session.models import ACCESS_LOG_ENTRIES, ACCESS_LOG_HEAD, AccessLogEntryRow
from telemesh.access_log import GroupedAccessRecorder
from telemesh.db import Database
from telemesh.hash_chain import HashChain, format_instant
from telemesh.session.v1 import session_pb2

SERVICE = "session"

CHAIN = HashChain(
    ACCESS_LOG_ENTRIES,
    ACCESS_LOG_HEAD,
    (
        "access_id",
        "access_time",
        "patient_id",
        "actor_id",
        "actor_role",
        "service",
        "method",
        "outcome",
        "basis",
    ),
    limits={"actor_id": 100, "actor_role": 20, "service": 20, "method": 200, "basis": 60},
)


def _content(access: session_pb2.PatientAccess) -> dict[str, Any]:
    return {
        "access_id": access.access_id,
        "access_time": format_instant(access.access_time.ToDatetime(tzinfo=UTC)),
        "patient_id": access.patient_id,
        "actor_id": access.actor_id,
        "actor_role": access.actor_role,
        "service": access.service,
        "method": access.method,
        "outcome": int(access.outcome),
        "basis": access.basis,
    }


async def append(session: AsyncSession, accesses: Sequence[session_pb2.PatientAccess]) -> int:
    """Appends the accesses not recorded yet (by access_id); how many were new."""
    head = await CHAIN.lock_head(session)  # first: every appender locks in one order
    wanted = list(dict.fromkeys(access.access_id for access in accesses))
    found = await session.exec(
        select(AccessLogEntryRow.access_id).where(col(AccessLogEntryRow.access_id).in_(wanted))
    )
    seen = set(found.all())
    fresh = []
    for access in accesses:
        if access.access_id not in seen:
            seen.add(access.access_id)
            fresh.append(_content(access))
    await CHAIN.append(session, head, fresh)
    return len(fresh)


def local_recorder(db: Database) -> GroupedAccessRecorder:
    """This service's own accesses, appended in group commits of their own before the
    answer goes out (never inside another write: SQLite has one writer)."""

    async def send(accesses: list[session_pb2.PatientAccess]) -> None:
        await db.run_write(lambda session: append(session, accesses))

    return GroupedAccessRecorder(SERVICE, send)


async def list_entries(
    session: AsyncSession, patient_id: str, before_sequence: int | None, limit: int
) -> Sequence[AccessLogEntryRow]:
    """One patient's entries, newest first, before `before_sequence` when given."""
    statement = select(AccessLogEntryRow).where(AccessLogEntryRow.patient_id == patient_id)
    if before_sequence is not None:
        statement = statement.where(col(AccessLogEntryRow.sequence) < before_sequence)
    result = await session.exec(
        statement.order_by(col(AccessLogEntryRow.sequence).desc()).limit(limit)
    )
    return result.all()
