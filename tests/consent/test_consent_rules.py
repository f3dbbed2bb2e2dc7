"""ConsentService's rules against a real service: checks, versions, expiry, bad input,
concurrency and idempotency, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc

from telemesh.consent.v1 import consent_pb2 as P
from telemesh.errors import reason_of
from tests.support.consent_api import (
    RECORDING,
    SHARING,
    TELEHEALTH,
    TEXT_SHA256,
    consent_api,
    new_patient,
)
from tests.support.errors import bad_fields, refused
from tests.support.flows import rid
from tests.support.harness import Stack


async def test_a_grant_permits_and_records_who_agreed_to_what(consent_stack: Stack) -> None:
    patient = new_patient()
    async with consent_api(consent_stack) as api:
        consent = await api.grant(patient)
        assert (consent.version, consent.state) == (1, P.CONSENT_STATE_ACTIVE)
        assert consent.text_sha256 == TEXT_SHA256
        assert (consent.captured_by, consent.capture_method) == (patient, P.CAPTURE_METHOD_IN_APP)

        answer = await api.check(patient)
        assert answer.decision == P.DECISION_PERMIT
        assert answer.reason == P.DECISION_REASON_ACTIVE_CONSENT
        assert (answer.consent.consent_id, answer.consent.version) == (consent.consent_id, 1)
        # Another category of the same patient has no record of its own.
        other = await api.check(patient, RECORDING)
        assert other.decision == P.DECISION_DENY


async def test_no_record_denies(consent_stack: Stack) -> None:
    async with consent_api(consent_stack) as api:
        answer = await api.check(new_patient())
        assert answer.decision == P.DECISION_DENY
        assert answer.reason == P.DECISION_REASON_NO_RECORD
        assert not answer.HasField("consent")


async def test_deny_wins_over_an_earlier_permit(consent_stack: Stack) -> None:
    patient = new_patient()
    async with consent_api(consent_stack) as api:
        granted = await api.grant(patient)
        rejected = await api.reject(patient, expected_version=granted.version)
        assert (rejected.version, rejected.state) == (2, P.CONSENT_STATE_REJECTED)

        answer = await api.check(patient)
        assert (answer.decision, answer.reason) == (P.DECISION_DENY, P.DECISION_REASON_REJECTED)
        assert answer.consent.version == 2
        # The grant still permits at an instant before the rejection was recorded.
        then = granted.record_time.ToDatetime(tzinfo=UTC)
        past = await api.check(patient, at=then)
        assert (past.decision, past.consent.version) == (P.DECISION_PERMIT, 1)
        # A sharing consent naming one clinic permits nothing for another.
        await api.grant(patient, SHARING, partner_clinic_id="clinic-a")
        assert (await api.check(patient, SHARING, "clinic-a")).decision == P.DECISION_PERMIT
        assert (await api.check(patient, SHARING, "clinic-b")).decision == P.DECISION_DENY


async def test_revocation_denies_and_revoking_again_is_refused_and_audited(
    consent_stack: Stack,
) -> None:
    patient = new_patient()
    async with consent_api(consent_stack) as api:
        granted = await api.grant(patient)
        revoked = await api.revoke(granted)
        assert (revoked.version, revoked.state) == (2, P.CONSENT_STATE_REVOKED)
        assert revoked.text_sha256 == granted.text_sha256

        answer = await api.check(patient)
        assert (answer.decision, answer.reason) == (P.DECISION_DENY, P.DECISION_REASON_REVOKED)
        error = await refused(api.revoke(revoked))
        assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert reason_of(error) == "CONSENT_ALREADY_REVOKED"

        versions = await api.versions(granted.consent_id)
        assert [(v.version, v.state) for v in versions] == [
            (1, P.CONSENT_STATE_ACTIVE),
            (2, P.CONSENT_STATE_REVOKED),
        ]
        trail = [(e.action, e.outcome) for e in await api.audit(patient)]
        assert trail == [
            (P.AUDIT_ACTION_GRANT, "active"),
            (P.AUDIT_ACTION_REVOKE, "revoked"),
            (P.AUDIT_ACTION_CHECK, "deny:revoked"),
            (P.AUDIT_ACTION_REFUSED, "refused:RevokeConsent:CONSENT_ALREADY_REVOKED"),
        ]


async def test_expiry(consent_stack: Stack) -> None:
    patient = new_patient()
    now = datetime.now(UTC)
    async with consent_api(consent_stack) as api:
        consent = await api.grant(patient, valid_until=now + timedelta(seconds=1.5))
        end = consent.valid_until.ToDatetime(tzinfo=UTC)
        just_before = await api.check(patient, at=end - timedelta(microseconds=1))
        assert just_before.decision == P.DECISION_PERMIT
        at_end = await api.check(patient, at=end)
        assert (at_end.decision, at_end.reason) == (P.DECISION_DENY, P.DECISION_REASON_EXPIRED)

        later = await api.grant(new_patient(), RECORDING, valid_from=now + timedelta(days=1))
        early = await api.check(later.patient_id, RECORDING)
        assert early.reason == P.DECISION_REASON_NOT_YET_VALID

        # Once the period has ended the service records the expiry as a new version.
        for _ in range(50):
            versions = await api.versions(consent.consent_id)
            if versions[-1].state == P.CONSENT_STATE_EXPIRED:
                break
            await asyncio.sleep(0.1)
        assert [v.state for v in versions] == [P.CONSENT_STATE_ACTIVE, P.CONSENT_STATE_EXPIRED]
        answer = await api.check(patient)
        assert (answer.decision, answer.reason) == (P.DECISION_DENY, P.DECISION_REASON_EXPIRED)
        assert P.AUDIT_ACTION_EXPIRE in [e.action for e in await api.audit(patient)]


async def test_bad_input_is_refused_with_every_bad_field_and_audited(
    consent_stack: Stack,
) -> None:
    patient = new_patient()
    now = datetime.now(UTC)
    cases: list[tuple[dict[str, Any], set[str]]] = [
        ({"category": 99}, {"category"}),
        (
            {"valid_from": now + timedelta(days=2), "valid_until": now + timedelta(days=1)},
            {"valid_until"},
        ),
        ({"text_sha256": ""}, {"text_sha256"}),
        ({"text_sha256": TEXT_SHA256.upper()}, {"text_sha256"}),
        (
            {"text_sha256": "abc", "category": 0, "text_version": ""},
            {"text_sha256", "category", "text_version"},
        ),
        ({"category": SHARING}, {"partner_clinic_id"}),
    ]
    async with consent_api(consent_stack) as api:
        for fields, expected in cases:
            error = await refused(api.grant(patient, **fields))
            assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, fields
            assert bad_fields(error) == expected, fields
        refusals = [e.outcome for e in await api.audit(patient)]
        assert refusals == [
            "refused:GrantConsent:INVALID_ARGUMENT:" + ",".join(sorted(expected))
            for _, expected in cases
        ]


async def test_concurrent_changes_never_lose_a_version(consent_stack: Stack) -> None:
    patient = new_patient()
    async with consent_api(consent_stack) as api:
        granted = await api.grant(patient)
        # Racing revocations of the version they all saw: exactly one wins.
        results = await asyncio.gather(
            *(api.revoke(granted) for _ in range(6)), return_exceptions=True
        )
        winners = [r for r in results if isinstance(r, P.Consent)]
        losers = [r for r in results if isinstance(r, grpc.aio.AioRpcError)]
        assert len(winners) == 1, results
        assert len(losers) == 5, results
        assert {e.code() for e in losers} <= {
            grpc.StatusCode.ABORTED,
            grpc.StatusCode.FAILED_PRECONDITION,
        }
        # Racing grants that replace whatever is newest: every one is a version.
        grants = await asyncio.gather(*(api.grant(patient) for _ in range(8)))
        versions = await api.versions(granted.consent_id)
        assert [v.version for v in versions] == list(range(1, 11))
        assert sorted(g.version for g in grants) == list(range(3, 11))
        # A grant based on a version that is no longer the newest is ABORTED.
        stale = await refused(api.grant(patient, expected_version=5))
        assert stale.code() == grpc.StatusCode.ABORTED


async def test_a_retry_with_the_same_request_id_changes_nothing(consent_stack: Stack) -> None:
    patient = new_patient()
    request = P.GrantConsentRequest(
        request_id=rid(),
        patient_id=patient,
        category=TELEHEALTH,
        text_version="2026-03",
        text_sha256=TEXT_SHA256,
    )
    async with consent_api(consent_stack) as api:
        caller = api.tokens.patient(patient)
        await api.ensure_patient(patient)
        first = await api.stub.GrantConsent(request, metadata=caller)
        again = await api.stub.GrantConsent(request, metadata=caller)
        assert again == first
        assert len(await api.versions(first.consent.consent_id)) == 1
        request.text_version = "2026-04"
        error = await refused(api.stub.GrantConsent(request, metadata=caller))
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_lists_page(consent_stack: Stack) -> None:
    patient = new_patient()
    async with consent_api(consent_stack) as api:
        made = {
            (await api.grant(patient, category, partner_clinic_id=partner)).consent_id
            for category, partner in ((TELEHEALTH, ""), (RECORDING, ""), (SHARING, "clinic-a"))
        }
        seen: list[str] = []
        token = ""
        while True:
            page = await api.stub.ListConsents(
                P.ListConsentsRequest(patient_id=patient, page_size=2, page_token=token),
                metadata=api.tokens.patient(patient),
            )
            seen.extend(c.consent_id for c in page.consents)
            token = page.next_page_token
            if not token:
                break
        assert sorted(seen) == sorted(made)
        bad = await refused(
            api.stub.ListConsents(
                P.ListConsentsRequest(patient_id=patient, page_token="garbage"),
                metadata=api.admin,
            )
        )
        assert bad.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_verbal_consent_is_recorded_by_a_clinician(consent_stack: Stack) -> None:
    patient = new_patient()
    async with consent_api(consent_stack) as api:
        clinician_id, clinician = await api.treating_clinician(patient)
        consent = await api.grant(patient, RECORDING, caller=clinician)
        assert consent.capture_method == P.CAPTURE_METHOD_VERBAL
        assert consent.captured_by == clinician_id
        # The patient, not the clinician, revokes it.
        revoked = await api.revoke(consent)
        assert (revoked.state, revoked.captured_by) == (P.CONSENT_STATE_REVOKED, patient)
        wrong_way = await refused(api.grant(patient, capture_method=P.CAPTURE_METHOD_VERBAL))
        assert bad_fields(wrong_way) == {"capture_method"}
