"""Auditing refused attempts.

A refused grant, rejection, revocation or check (bad input, a broken rule, a stale
version, missing rights) rolls its own transaction back, so its audit entry is written
afterwards in a transaction of its own.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace

from sqlmodel.ext.asyncio.session import AsyncSession

from svc_consent import audit_chain, ledger
from svc_consent.audit_chain import AuditDraft
from telemesh.auth import current_principal
from telemesh.consent.v1 import consent_pb2
from telemesh.db import Database
from telemesh.errors import (
    Aborted,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    TelemeshError,
)

logger = logging.getLogger("svc_consent.refusals")

REFUSALS = (InvalidArgument, FailedPrecondition, Aborted, NotFound, PermissionDenied)


def outcome(method: str, error: TelemeshError) -> str:
    """`refused:<method>:<reason>`, then the bad fields' names (never their values)."""
    text = f"refused:{method}:{error.reason}"
    fields = sorted({violation.field for violation in error.violations})
    return f"{text}:{','.join(fields)}" if fields else text


def _is_uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


async def _write(db: Database, draft: AuditDraft) -> None:
    async def work(session: AsyncSession) -> None:
        head = await audit_chain.lock_head(session)
        entry = draft
        if not entry.patient_id and _is_uuid(entry.consent_id):
            consent = await ledger.get_consent(session, entry.consent_id)
            if consent is not None:
                entry = replace(draft, patient_id=consent.patient_id, category=consent.category)
        await audit_chain.append(session, head, [entry])

    await db.run_write(work)


@asynccontextmanager
async def audited(
    db: Database,
    method: str,
    *,
    patient_id: str = "",
    category: int = 0,
    consent_id: str = "",
) -> AsyncIterator[None]:
    """Audits the change in the block if it is refused, then lets the error through."""
    try:
        yield
    except REFUSALS as error:
        principal = current_principal()
        draft = AuditDraft(
            action=consent_pb2.AUDIT_ACTION_REFUSED,
            actor_id=principal.subject,
            actor_role=principal.role,
            outcome=outcome(method, error),
            patient_id=patient_id,
            category=category,
            consent_id=consent_id,
        )
        try:
            await _write(db, draft)
        except Exception:
            logger.error("could not audit a refused change", exc_info=True)
        raise
