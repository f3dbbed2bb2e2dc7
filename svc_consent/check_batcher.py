"""Audited checks in batches: many checks, one transaction, one commit.

Every check is appended to the audit trail before its answer leaves the service, and
appends are serialized. Committing each check alone would make concurrent checks queue
for one disk flush each; instead the checks that arrive while a batch is being written
are judged and appended together in the next one (group commit). Judging inside the
transaction that holds the chain's lock also makes the trail tell the truth about order:
a check appended after a revocation has seen it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial

from sqlmodel.ext.asyncio.session import AsyncSession

from svc_consent import audit_chain, ledger
from svc_consent.audit_chain import AuditDraft
from svc_consent.decisions import Judgement, judge
from svc_consent.requests import CheckRequest
from telemesh.auth import Principal
from telemesh.consent.v1 import consent_pb2
from telemesh.db import Database
from telemesh.group_commit import GroupCommit

logger = logging.getLogger("svc_consent.checks")


@dataclass(frozen=True)
class CheckAnswer:
    judgement: Judgement
    change_sequence: int


@dataclass
class _Pending:
    request: CheckRequest
    principal: Principal


def _draft(pending: _Pending, judgement: Judgement) -> AuditDraft:
    request, principal = pending.request, pending.principal
    outcome = judgement.outcome()
    if request.at is not None:
        outcome += f" at={audit_chain.format_instant(request.at)}"
    version = judgement.version
    return AuditDraft(
        action=consent_pb2.AUDIT_ACTION_CHECK,
        actor_id=principal.subject,
        actor_role=principal.role,
        outcome=outcome,
        patient_id=request.key.patient_id,
        category=request.key.category,
        consent_id=version.consent_id if version is not None else "",
        consent_version=version.version if version is not None else 0,
    )


def _past_instant(request: CheckRequest, now: datetime) -> datetime | None:
    """The instant a check asks about when that is before `now`; None for now."""
    return request.at if request.at is not None and request.at < now else None


class CheckBatcher:
    """Audited checks, judged and appended to the audit trail in group commits
    (telemesh.group_commit): one chain lock per batch, not per check."""

    def __init__(self, db: Database, max_batch: int = 128) -> None:
        self.db = db
        self._group: GroupCommit[_Pending, CheckAnswer] = GroupCommit(
            lambda batch: self.db.run_write(partial(self._judge_all, batch=batch)),
            max_batch=max_batch,
        )

    async def check(self, request: CheckRequest, principal: Principal) -> CheckAnswer:
        """Judges and audits one check; returns once its audit entry is committed."""
        return await self._group.submit(_Pending(request, principal))

    async def _judge_all(
        self, session: AsyncSession, *, batch: list[_Pending]
    ) -> list[CheckAnswer]:
        head = await audit_chain.lock_head(session)
        change_sequence = await ledger.head_change_sequence(session)
        now = datetime.now(UTC)
        # Checks about now (the usual case) read the newest versions in one query; a
        # check about a past instant reads the version in force then.
        newest = await ledger.newest_versions(
            session, [p.request.key for p in batch if _past_instant(p.request, now) is None]
        )
        judgements: list[Judgement] = []
        for pending in batch:
            key, at = pending.request.key, pending.request.at
            past = _past_instant(pending.request, now)
            if past is not None:
                version = await ledger.version_recorded_by(session, key, past)
            else:
                version = newest.get(key)
            judgements.append(judge(version, at or now))
        await audit_chain.append(
            session, head, [_draft(p, j) for p, j in zip(batch, judgements, strict=True)]
        )
        return [CheckAnswer(j, change_sequence) for j in judgements]

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        """Lets the batch being written finish."""
        await self._group.stop()
