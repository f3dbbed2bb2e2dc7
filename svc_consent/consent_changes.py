"""Grant, reject, revoke and expire: each a new version and an audit entry, in one
transaction that takes the audit chain's lock first."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlmodel.ext.asyncio.session import AsyncSession

from svc_consent import access, audit_chain, ledger
from svc_consent.audit_chain import AuditDraft, ChainHead
from svc_consent.ledger import ConsentKey, VersionContent
from svc_consent.models import ConsentVersionRow
from svc_consent.requests import CAPTURE_BY_ROLE, ChangeRequest
from telemesh.auth import Principal
from telemesh.consent.v1 import consent_pb2
from telemesh.errors import Aborted, FailedPrecondition, NotFound

# What each new state is called in the audit trail, and the action that makes it.
_ACTIONS: dict[int, consent_pb2.AuditAction.ValueType] = {
    consent_pb2.CONSENT_STATE_ACTIVE: consent_pb2.AUDIT_ACTION_GRANT,
    consent_pb2.CONSENT_STATE_REJECTED: consent_pb2.AUDIT_ACTION_REJECT,
    consent_pb2.CONSENT_STATE_REVOKED: consent_pb2.AUDIT_ACTION_REVOKE,
    consent_pb2.CONSENT_STATE_EXPIRED: consent_pb2.AUDIT_ACTION_EXPIRE,
}

# The actor the service itself appears as (the expiry sweep).
SERVICE_ACTOR = Principal("service", "consent")


def state_name(state: int) -> str:
    return (
        consent_pb2.ConsentState.Name(consent_pb2.ConsentState.ValueType(state))
        .removeprefix("CONSENT_STATE_")
        .lower()
    )


async def _record(
    session: AsyncSession,
    head: ChainHead,
    key: ConsentKey,
    current: ConsentVersionRow | None,
    content: VersionContent,
    actor: Principal,
) -> ConsentVersionRow:
    """The new version and its audit entry (`head` locked by the caller, first)."""
    row = await ledger.append_version(session, key, current, content, datetime.now(UTC))
    await audit_chain.append(
        session,
        head,
        [
            AuditDraft(
                action=_ACTIONS[content.state],
                actor_id=actor.subject,
                actor_role=actor.role,
                outcome=state_name(content.state),
                patient_id=key.patient_id,
                category=key.category,
                consent_id=row.consent_id,
                consent_version=row.version,
            )
        ],
    )
    return row


def _stale(current: ConsentVersionRow, expected_version: int) -> Aborted:
    return Aborted(
        "CONSENT_VERSION_CONFLICT",
        f"the consent is at version {current.version}, not {expected_version}; read it again",
        {"consent_id": current.consent_id, "version": str(current.version)},
    )


async def grant_or_reject(
    session: AsyncSession, change: ChangeRequest, state: int, actor: Principal
) -> ConsentVersionRow:
    """A grant (state active) or a rejection: the first version of a consent, or the next."""
    head = await audit_chain.lock_head(session)
    current = await ledger.find_consent(session, change.key)
    if change.expected_version:
        if current is None:
            raise NotFound("consent", f"{change.key.patient_id}/{change.key.category}")
        if current.version != change.expected_version:
            raise _stale(current, change.expected_version)
    content = VersionContent(
        state=state,
        text_version=change.text_version,
        text_sha256=change.text_sha256,
        capture_method=change.capture_method,
        captured_by=actor.subject,
        valid_from=change.valid_from,
        valid_until=change.valid_until,
    )
    return await _record(session, head, change.key, current, content, actor)


def _key_of(consent: ConsentVersionRow) -> ConsentKey:
    return ConsentKey(consent.patient_id, consent.category, consent.partner_clinic_id)


async def revoke(
    session: AsyncSession, consent_id: str, expected_version: int
) -> ConsentVersionRow:
    """Revokes an active consent, at the version the caller saw, for its patient (only
    the patient revokes: svc_consent.access)."""
    head = await audit_chain.lock_head(session)
    current = await ledger.current_version(session, consent_id)
    if current is None:
        raise NotFound("consent", consent_id)
    actor = access.require_patient_self(current.patient_id)
    if current.state == consent_pb2.CONSENT_STATE_REVOKED:
        raise FailedPrecondition(
            "CONSENT_ALREADY_REVOKED",
            "the consent is already revoked",
            {"consent_id": current.consent_id},
        )
    if current.version != expected_version:
        raise _stale(current, expected_version)
    if current.state != consent_pb2.CONSENT_STATE_ACTIVE:
        raise FailedPrecondition(
            "CONSENT_NOT_ACTIVE",
            f"only an active consent can be revoked; this one is {state_name(current.state)}",
            {"consent_id": current.consent_id},
        )
    content = VersionContent(
        state=consent_pb2.CONSENT_STATE_REVOKED,
        text_version=current.text_version,
        text_sha256=current.text_sha256,
        capture_method=CAPTURE_BY_ROLE.get(actor.role, consent_pb2.CAPTURE_METHOD_UNSPECIFIED),
        captured_by=actor.subject,
        valid_from=current.valid_from,
        valid_until=current.valid_until,
    )
    return await _record(session, head, _key_of(current), current, content, actor)


async def expire_due(session: AsyncSession, now: datetime, limit: int) -> int:
    """Writes an expired version of every active consent whose period has ended."""
    head = await audit_chain.lock_head(session)
    expired = 0
    for current in await ledger.due_for_expiry(session, now, limit):
        content = VersionContent(
            state=consent_pb2.CONSENT_STATE_EXPIRED,
            text_version=current.text_version,
            text_sha256=current.text_sha256,
            capture_method=current.capture_method,
            captured_by=SERVICE_ACTOR.subject,
            valid_from=current.valid_from,
            valid_until=current.valid_until,
        )
        await _record(session, head, _key_of(current), current, content, SERVICE_ACTOR)
        expired += 1
    return expired
