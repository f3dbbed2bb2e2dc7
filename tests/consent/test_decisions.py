"""The consent service's pure rules, without a process: judging a check (deny wins) and
walking a chain of entries."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from svc_consent.audit_chain import (
    AuditDraft,
    ChainEntry,
    Verdict,
    chain_hash,
    verify,
)
from svc_consent.decisions import decide
from svc_consent.models import GENESIS_HASH, ConsentVersionRow
from telemesh.consent.v1 import consent_pb2 as P

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


def version(state: int, **fields: Any) -> ConsentVersionRow:
    values: dict[str, Any] = {
        "consent_id": "c",
        "version": 1,
        "change_sequence": 1,
        "patient_id": "p",
        "category": P.CONSENT_CATEGORY_PARTNER_SHARING,
        "partner_clinic_id": "clinic-a",
        "state": state,
        "text_version": "v",
        "text_sha256": "0" * 64,
        "capture_method": P.CAPTURE_METHOD_IN_APP,
        "captured_by": "p",
        "record_time": NOW - timedelta(days=1),
        "valid_from": NOW - timedelta(days=1),
        "valid_until": None,
    }
    values.update(fields)
    return ConsentVersionRow(**values)


def test_deny_wins_over_permit_whatever_the_order() -> None:
    permit = version(P.CONSENT_STATE_ACTIVE)
    deny = version(P.CONSENT_STATE_REVOKED, consent_id="d")
    for versions in ([permit, deny], [deny, permit], [permit, None, deny]):
        judgement = decide(versions, NOW)
        assert (judgement.decision, judgement.reason) == (
            P.DECISION_DENY,
            P.DECISION_REASON_REVOKED,
        )
        assert judgement.version is deny
    assert decide([permit, None], NOW).decision == P.DECISION_PERMIT
    assert decide([None], NOW).reason == P.DECISION_REASON_NO_RECORD
    assert decide([], NOW).reason == P.DECISION_REASON_NO_RECORD


def test_an_active_version_permits_only_inside_its_period() -> None:
    bounded = version(P.CONSENT_STATE_ACTIVE, valid_until=NOW)
    assert decide([bounded], NOW - timedelta(microseconds=1)).decision == P.DECISION_PERMIT
    assert decide([bounded], NOW).reason == P.DECISION_REASON_EXPIRED
    early = decide([bounded], NOW - timedelta(days=2))
    assert early.reason == P.DECISION_REASON_NOT_YET_VALID
    assert decide([version(P.CONSENT_STATE_REJECTED)], NOW).reason == (P.DECISION_REASON_REJECTED)
    assert decide([version(99)], NOW).decision == P.DECISION_DENY


def chain(length: int) -> list[ChainEntry]:
    entries: list[ChainEntry] = []
    previous = GENESIS_HASH
    for sequence in range(1, length + 1):
        draft = AuditDraft(P.AUDIT_ACTION_CHECK, "session", "service", f"permit {sequence}")
        entry = ChainEntry(
            sequence,
            NOW,
            draft.action,
            draft.actor_id,
            draft.actor_role,
            "p",
            1,
            "",
            0,
            draft.outcome,
            previous,
            "",
        )
        entry = replace(entry, entry_hash=chain_hash(previous, entry))
        entries.append(entry)
        previous = entry.entry_hash
    return entries


async def walk(entries: list[ChainEntry], head: tuple[int, str] | None) -> Verdict:
    async def rows() -> AsyncIterator[Any]:
        for entry in sorted(entries, key=lambda e: e.sequence):
            yield entry

    async def locate(entry_hash: str) -> int | None:
        return next((e.sequence for e in entries if e.entry_hash == entry_hash), None)

    return await verify(rows(), head, locate)


async def test_verify_tells_each_kind_of_tampering() -> None:
    entries = chain(6)
    head = (6, entries[-1].entry_hash)
    assert (await walk(entries, head)).intact

    edited = [*entries[:2], replace(entries[2], outcome="deny:revoked"), *entries[3:]]
    deleted = [e for e in entries if e.sequence != 3]
    swapped = [
        *entries[:2],
        replace(entries[3], sequence=3),
        replace(entries[2], sequence=4),
        *entries[4:],
    ]
    rehashed_entry = replace(entries[2], outcome="deny:revoked")
    rehashed = [
        *entries[:2],
        replace(
            rehashed_entry, entry_hash=chain_hash(rehashed_entry.previous_hash, rehashed_entry)
        ),
        *entries[3:],
    ]
    renumbered = [*entries[:2], *(replace(e, sequence=e.sequence - 1) for e in entries[3:])]
    relinked = [*entries[:2], replace(entries[2], previous_hash="f" * 64), *entries[3:]]
    cases = [
        (edited, head, P.AUDIT_PROBLEM_EDITED, 3),
        (deleted, head, P.AUDIT_PROBLEM_DELETED, 3),
        (swapped, head, P.AUDIT_PROBLEM_REORDERED, 3),
        (rehashed, head, P.AUDIT_PROBLEM_EDITED, 3),
        (renumbered, head, P.AUDIT_PROBLEM_DELETED, 3),
        (relinked, head, P.AUDIT_PROBLEM_EDITED, 3),
        (entries[:5], head, P.AUDIT_PROBLEM_DELETED, 6),
        (entries, (5, entries[4].entry_hash), P.AUDIT_PROBLEM_INSERTED, 6),
        (entries, None, P.AUDIT_PROBLEM_DELETED, 7),
    ]
    for tampered, recorded, problem, first_bad in cases:
        verdict = await walk(tampered, recorded)
        assert not verdict.intact
        assert (int(verdict.problem), verdict.first_bad_sequence) == (problem, first_bad), verdict
        assert verdict.entries_checked == first_bad - 1
