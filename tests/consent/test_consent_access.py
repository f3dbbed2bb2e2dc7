"""Who may call each ConsentService RPC (WatchConsentChanges: test_consent_watch)."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable

import grpc

from telemesh.consent.v1 import consent_pb2 as P
from telemesh.errors import reason_of
from tests.support.consent_api import RECORDING, SHARING, TELEHEALTH, consent_api, new_patient
from tests.support.errors import bad_fields, refused
from tests.support.flows import rid
from tests.support.harness import Stack

DENIED = grpc.StatusCode.PERMISSION_DENIED


async def test_only_the_patient_changes_consents(consent_stack: Stack) -> None:
    patient, other = new_patient(), new_patient()
    tokens = consent_stack.tokens
    async with consent_api(consent_stack) as api:
        await api.ensure_patient(other)
        for caller, reason in (
            (tokens.patient(other), "NOT_OWNER"),
            (tokens.clinician("c-unrelated"), "NO_CARE_RELATIONSHIP"),
            (tokens.role("admin", "a-1"), "ROLE_NOT_ALLOWED"),
            (tokens.role("partner", "clinic-a"), "ROLE_NOT_ALLOWED"),
            (tokens.service("session"), "ROLE_NOT_ALLOWED"),
        ):
            error = await refused(api.grant(patient, caller=caller))
            assert (error.code(), reason_of(error)) == (DENIED, reason)
            assert (await refused(api.reject(patient, caller=caller))).code() == DENIED
        consent = await api.grant(patient)
        error = await refused(api.revoke(consent, caller=tokens.patient(other)))
        assert (error.code(), reason_of(error)) == (DENIED, "NOT_OWNER")
        # The refused attempts are audited like any other.
        outcomes = [e.outcome for e in await api.audit(patient)]
        assert outcomes.count("refused:GrantConsent:NOT_OWNER") == 1
        assert outcomes.count("refused:GrantConsent:NO_CARE_RELATIONSHIP") == 1
        assert outcomes.count("refused:GrantConsent:ROLE_NOT_ALLOWED") == 3
        assert outcomes[-1] == "refused:RevokeConsent:NOT_OWNER"


async def test_a_treating_clinician_records_only_verbal_telehealth_or_recording_grants(
    consent_stack: Stack,
) -> None:
    patient = new_patient()
    async with consent_api(consent_stack) as api:
        _, clinician = await api.treating_clinician(patient)
        verbal = await api.grant(patient, RECORDING, caller=clinician)
        assert verbal.capture_method == P.CAPTURE_METHOD_VERBAL
        for attempt in (
            api.grant(patient, SHARING, partner_clinic_id="clinic-a", caller=clinician),
            api.reject(patient, caller=clinician),
            api.revoke(verbal, caller=clinician),
        ):
            error = await refused(attempt)
            assert (error.code(), reason_of(error)) == (DENIED, "PATIENT_ONLY")
        # No consent for a patient who does not exist, whoever asks.
        ghost = new_patient()
        missing = await refused(api.grant(ghost, profile=False))
        assert missing.code() == grpc.StatusCode.NOT_FOUND


async def test_who_may_check(consent_stack: Stack) -> None:
    patient = new_patient()
    tokens = consent_stack.tokens
    async with consent_api(consent_stack) as api:
        await api.grant(patient)
        await api.grant(patient, SHARING, partner_clinic_id="clinic-a")
        _, treating = await api.treating_clinician(patient)
        for caller in (treating, tokens.service("session"), tokens.service("signaling")):
            answer = await api.check(patient, caller=caller)
            assert answer.decision == P.DECISION_PERMIT
        for caller in (
            tokens.clinician("c-unrelated"),
            tokens.patient(patient),
            tokens.role("admin", "a-1"),
            tokens.role("billing", "b-1"),
            tokens.service("billing"),
        ):
            assert (await refused(api.check(patient, caller=caller))).code() == DENIED

        clinic_a = tokens.role("partner", "clinic-a")
        answer = await api.check(patient, SHARING, "clinic-a", caller=clinic_a)
        assert answer.decision == P.DECISION_PERMIT
        for category, partner in ((SHARING, "clinic-b"), (TELEHEALTH, ""), (RECORDING, "")):
            error = await refused(api.check(patient, category, partner, caller=clinic_a))
            assert error.code() == DENIED
            assert reason_of(error) == "PARTNER_SCOPE"
        # Refused checks are audited, with who asked.
        refusals = [
            (e.actor_role, e.outcome)
            for e in await api.audit(patient)
            if e.action == P.AUDIT_ACTION_REFUSED
        ]
        assert refusals.count(("partner", "refused:CheckConsent:PARTNER_SCOPE")) == 3
        assert ("clinician", "refused:CheckConsent:NO_CARE_RELATIONSHIP") in refusals
        assert len(refusals) == 8


async def test_who_may_read_consents(consent_stack: Stack) -> None:
    patient = new_patient()
    tokens = consent_stack.tokens
    async with consent_api(consent_stack) as api:
        telehealth = await api.grant(patient)
        sharing = await api.grant(patient, SHARING, partner_clinic_id="clinic-a")

        def get(
            consent_id: str, caller: tuple[tuple[str, str], ...]
        ) -> Awaitable[P.GetConsentResponse]:
            return api.stub.GetConsent(P.GetConsentRequest(consent_id=consent_id), metadata=caller)

        _, treating = await api.treating_clinician(patient)
        for caller in (tokens.patient(patient), treating, tokens.service("session")):
            reply = await api.stub.GetConsent(
                P.GetConsentRequest(consent_id=telehealth.consent_id), metadata=caller
            )
            assert reply.consent == telehealth
        clinic_a = tokens.role("partner", "clinic-a")
        for stranger in (tokens.patient("p-x"), tokens.clinician("c-unrelated")):
            assert (await refused(get(telehealth.consent_id, stranger))).code() == DENIED
        assert (await refused(get(telehealth.consent_id, clinic_a))).code() == DENIED
        assert (
            await refused(get(sharing.consent_id, tokens.role("partner", "clinic-b")))
        ).code() == DENIED
        own = await api.stub.GetConsent(
            P.GetConsentRequest(consent_id=sharing.consent_id), metadata=clinic_a
        )
        assert own.consent == sharing
        missing = await refused(get(str(uuid.uuid4()), api.admin))
        assert missing.code() == grpc.StatusCode.NOT_FOUND

        listed = await api.stub.ListConsents(
            P.ListConsentsRequest(patient_id=patient), metadata=clinic_a
        )
        assert [c.consent_id for c in listed.consents] == [sharing.consent_id]
        for stranger in (tokens.patient("p-x"), tokens.clinician("c-unrelated")):
            error = await refused(
                api.stub.ListConsents(P.ListConsentsRequest(patient_id=patient), metadata=stranger)
            )
            assert error.code() == DENIED
        error = await refused(
            api.stub.ListConsentVersions(
                P.ListConsentVersionsRequest(consent_id=telehealth.consent_id),
                metadata=tokens.role("billing", "b-1"),
            )
        )
        assert error.code() == DENIED


async def test_who_may_read_and_verify_the_audit_trail(consent_stack: Stack) -> None:
    patient = new_patient()
    tokens = consent_stack.tokens
    async with consent_api(consent_stack) as api:
        await api.grant(patient)
        own = await api.stub.ListAuditEntries(
            P.ListAuditEntriesRequest(patient_id=patient), metadata=tokens.patient(patient)
        )
        assert [e.action for e in own.entries] == [P.AUDIT_ACTION_GRANT]
        for request, caller in (
            (P.ListAuditEntriesRequest(), tokens.patient(patient)),
            (P.ListAuditEntriesRequest(patient_id=patient), tokens.patient("p-x")),
            (P.ListAuditEntriesRequest(patient_id=patient), tokens.clinician("c-1")),
            (P.ListAuditEntriesRequest(), tokens.service("session")),
        ):
            error = await refused(api.stub.ListAuditEntries(request, metadata=caller))
            assert error.code() == DENIED
        assert (await api.verify()).intact
        for caller in (tokens.patient(patient), tokens.clinician("c-1"), tokens.service("session")):
            error = await refused(
                api.stub.VerifyAuditTrail(P.VerifyAuditTrailRequest(), metadata=caller)
            )
            assert error.code() == DENIED


async def test_a_malformed_revocation_is_refused_before_rights_are_known(
    consent_stack: Stack,
) -> None:
    patient = new_patient()
    async with consent_api(consent_stack) as api:
        error = await refused(
            api.stub.RevokeConsent(
                P.RevokeConsentRequest(consent_id="not-a-uuid"),
                metadata=api.tokens.patient(patient),
            )
        )
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert bad_fields(error) == {"request_id", "consent_id", "expected_version"}
        consent = await api.grant(patient)
        ok = await api.stub.RevokeConsent(
            P.RevokeConsentRequest(
                request_id=rid(),
                consent_id=consent.consent_id,
                expected_version=1,
            ),
            metadata=api.tokens.patient(patient),
        )
        assert ok.consent.state == P.CONSENT_STATE_REVOKED
