"""Judging a check: permit or deny, with the reason and the version it rests on.

Anything but an active version inside its validity period denies: no record, a
rejection, a revocation, an expiry, a period not yet begun. Where several records bear
on one check, deny wins over permit.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from svc_consent.models import ConsentVersionRow
from telemesh.consent.v1 import consent_pb2

_DENIED_STATES: dict[int, consent_pb2.DecisionReason.ValueType] = {
    consent_pb2.CONSENT_STATE_REJECTED: consent_pb2.DECISION_REASON_REJECTED,
    consent_pb2.CONSENT_STATE_REVOKED: consent_pb2.DECISION_REASON_REVOKED,
    consent_pb2.CONSENT_STATE_EXPIRED: consent_pb2.DECISION_REASON_EXPIRED,
}


@dataclass(frozen=True)
class Judgement:
    decision: consent_pb2.Decision.ValueType
    reason: consent_pb2.DecisionReason.ValueType
    version: ConsentVersionRow | None = None

    @property
    def permits(self) -> bool:
        return self.decision == consent_pb2.DECISION_PERMIT

    def outcome(self) -> str:
        """The audit outcome: `permit` or `deny:<reason>`."""
        if self.permits:
            return "permit"
        name = consent_pb2.DecisionReason.Name(self.reason).removeprefix("DECISION_REASON_")
        return f"deny:{name.lower()}"


NO_RECORD = Judgement(consent_pb2.DECISION_DENY, consent_pb2.DECISION_REASON_NO_RECORD)


def judge(version: ConsentVersionRow | None, at: datetime) -> Judgement:
    """The answer one record gives at `at`."""
    if version is None:
        return NO_RECORD
    denied = _DENIED_STATES.get(version.state)
    if denied is not None:
        return Judgement(consent_pb2.DECISION_DENY, denied, version)
    if version.state != consent_pb2.CONSENT_STATE_ACTIVE:
        # A state this code does not know never permits.
        return Judgement(consent_pb2.DECISION_DENY, consent_pb2.DECISION_REASON_NO_RECORD, version)
    if at < version.valid_from:
        return Judgement(
            consent_pb2.DECISION_DENY, consent_pb2.DECISION_REASON_NOT_YET_VALID, version
        )
    if version.valid_until is not None and at >= version.valid_until:
        return Judgement(consent_pb2.DECISION_DENY, consent_pb2.DECISION_REASON_EXPIRED, version)
    return Judgement(
        consent_pb2.DECISION_PERMIT, consent_pb2.DECISION_REASON_ACTIVE_CONSENT, version
    )


def combine(judgements: Sequence[Judgement]) -> Judgement:
    """Deny wins: the first deny that rests on a record, else a permit, else no record."""
    denies = [j for j in judgements if not j.permits and j.version is not None]
    if denies:
        return denies[0]
    permits = [j for j in judgements if j.permits]
    if permits:
        return permits[0]
    return NO_RECORD


def decide(versions: Sequence[ConsentVersionRow | None], at: datetime) -> Judgement:
    """The answer of every record that bears on a check, combined."""
    return combine([judge(version, at) for version in versions])
