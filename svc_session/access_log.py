"""The HIPAA access log, kept here for every service (telemesh.access_log): appending
accesses (this service's own and those other services send), listing one patient's,
verifying the chain."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from svc_session.models import ACCESS_LOG_ENTRIES, ACCESS_LOG_HEAD, AccessLogEntryRow
from telemesh.access_log import MAX_BATCH, GroupedAccessRecorder
from telemesh.db import Database
from telemesh.hash_chain import HashChain, format_instant
from telemesh.session.v1 import session_pb2
from telemesh.timestamps import timestamp
from telemesh.validation import Violations

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


ROLES = frozenset({"patient", "clinician", "billing", "admin", "partner"})
OUTCOMES = frozenset({session_pb2.ACCESS_OUTCOME_ALLOWED, session_pb2.ACCESS_OUTCOME_REFUSED})


def check_record_request(request: session_pb2.RecordPatientAccessRequest, caller: str) -> None:
    """Every access well formed, and reported by the service that served it."""
    check = Violations()
    check.uuid("request_id", request.request_id)
    check.check(
        1 <= len(request.accesses) <= MAX_BATCH, "accesses", f"give 1 to {MAX_BATCH} accesses"
    )
    for index, access in enumerate(request.accesses[:MAX_BATCH]):
        field = f"accesses[{index}]"
        check.uuid(f"{field}.access_id", access.access_id)
        check.timestamp(f"{field}.access_time", access.access_time, access.HasField("access_time"))
        check.identifier(f"{field}.patient_id", access.patient_id)
        check.identifier(f"{field}.actor_id", access.actor_id)
        check.check(access.actor_role in ROLES, f"{field}.actor_role", "is not a user role")
        check.check(access.service == caller, f"{field}.service", "must name the reporting service")
        check.check(
            access.method.startswith("/telemesh.") and len(access.method) <= 200,
            f"{field}.method",
            "must be a Telemesh RPC path",
        )
        check.check(access.outcome in OUTCOMES, f"{field}.outcome", "must be ALLOWED or REFUSED")
        check.required(f"{field}.basis", access.basis)
        check.max_length(f"{field}.basis", access.basis, 60)
    check.raise_if_any()


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


def to_proto(row: AccessLogEntryRow) -> session_pb2.AccessLogEntry:
    return session_pb2.AccessLogEntry(
        sequence=row.sequence,
        access=session_pb2.PatientAccess(
            access_id=row.access_id,
            access_time=timestamp(datetime.fromisoformat(row.access_time)),
            patient_id=row.patient_id,
            actor_id=row.actor_id,
            actor_role=row.actor_role,
            service=row.service,
            method=row.method,
            outcome=session_pb2.AccessOutcome.ValueType(row.outcome),
            basis=row.basis,
        ),
        previous_hash=row.previous_hash,
        entry_hash=row.entry_hash,
        entry_time=timestamp(row.entry_time),
    )
