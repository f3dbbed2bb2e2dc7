"""Clinicians reach only their patients (issue 12, findings 1 and 2).

Every RPC that reaches one patient's record, called by every kind of caller: the patient,
another patient, a clinician with a care relationship (a booked visit), a clinician
without one, a clinician whose only visit was cancelled, an administrator, billing
staff, two partner clinics and a service. Each call is either answered or refused with
PERMISSION_DENIED, exactly as the table says, at the services themselves (no edge in
front), on SQLite and PostgreSQL. Every decision lands in the patient's access log.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import grpc
import pytest

from telemesh.billing.v1 import billing_pb2, billing_pb2_grpc
from telemesh.consent.v1 import consent_pb2 as C
from telemesh.errors import reason_of
from telemesh.session.v1 import session_pb2 as S
from telemesh.timestamps import timestamp as as_timestamp
from tests.support.consent_api import RECORDING, SHARING, TELEHEALTH, ConsentApi
from tests.support.errors import refused
from tests.support.flows import rid
from tests.support.harness import Stack

Metadata = tuple[tuple[str, str], ...]
Call = Callable[[Metadata], Awaitable[Any]]

CALLERS = (
    "patient",
    "other-patient",
    "treating-clinician",
    "unrelated-clinician",
    "cancelled-clinician",
    "admin",
    "billing-staff",
    "partner-a",
    "partner-b",
    "session-service",
    "billing-service",
)
# RPC about patient P -> the callers it answers; every other caller is PERMISSION_DENIED.
ALLOWED: dict[str, set[str]] = {
    "GetPatient": {"patient", "treating-clinician", "admin"},
    "BookVisit": {"patient", "treating-clinician", "admin"},
    "GrantConsent(telehealth)": {"patient", "treating-clinician"},
    "GrantConsent(sharing)": {"patient"},
    "RevokeConsent": {"patient"},
    "GetConsent": {"patient", "treating-clinician", "admin", "session-service"},
    "ListConsents": {
        "patient",
        "treating-clinician",
        "admin",
        "session-service",
        "partner-a",
        "partner-b",  # answered, but with none of P's consents (below)
    },
    "CheckConsent": {"treating-clinician", "session-service"},
    "ListCharges": {"patient", "admin", "billing-staff"},
    "GetPatientStatement": {"patient", "admin", "billing-staff"},
    "ListPatientAccess": {"patient", "admin"},
}
# The refusal reasons a clinician without a care relationship meets.
NO_RELATIONSHIP = {"NO_CARE_RELATIONSHIP", "ROLE_NOT_ALLOWED", "PATIENT_ONLY", "NOT_YOUR_LOG"}


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def care_stack(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    stack = Stack(tmp_path_factory.mktemp("care"), request.param, {})
    try:
        stack.start("session", "consent", "billing")
        yield stack
    finally:
        stack.close()


@dataclass
class World:
    """Patient P, the people around P, and P's consents."""

    api: ConsentApi
    billing: billing_pb2_grpc.BillingServiceAsyncStub
    patient_id: str
    callers: dict[str, Metadata] = field(default_factory=dict)
    clinician_ids: dict[str, str] = field(default_factory=dict)
    spare_clinician: str = ""
    treating_visit_id: str = ""
    telehealth: C.Consent | None = None

    async def book(self, clinician_id: str, caller: Metadata) -> S.BookVisitResponse:
        flows = self.api.flows
        start = await flows.next_slot(clinician_id, self.callers["patient"])
        return await flows.session.BookVisit(
            S.BookVisitRequest(
                request_id=rid(),
                clinician_id=clinician_id,
                patient_id=self.patient_id,
                start_time=as_timestamp(start),
            ),
            metadata=caller,
        )


@pytest.fixture
async def world(care_stack: Stack) -> AsyncIterator[World]:
    tokens = care_stack.tokens
    async with (
        care_stack.channel("consent") as consent_channel,
        care_stack.channel("billing") as billing_channel,
    ):
        api = ConsentApi(care_stack, consent_channel)
        try:
            patient_id = f"p-{uuid.uuid4().hex[:10]}"
            other_id = f"p-{uuid.uuid4().hex[:10]}"
            await api.ensure_patient(patient_id)
            await api.ensure_patient(other_id)
            world = World(api, billing_pb2_grpc.BillingServiceStub(billing_channel), patient_id)
            world.callers = {
                "patient": tokens.patient(patient_id),
                "other-patient": tokens.patient(other_id),
                "admin": tokens.role("admin", "admin-1"),
                "billing-staff": tokens.role("billing", "clerk-1"),
                "partner-a": tokens.role("partner", "clinic-a"),
                "partner-b": tokens.role("partner", "clinic-b"),
                "session-service": tokens.service("session"),
                "billing-service": tokens.service("billing"),
            }
            for name in ("treating-clinician", "unrelated-clinician", "cancelled-clinician"):
                clinician_id, md = await api.flows.clinician()
                world.callers[name] = md
                world.clinician_ids[name] = clinician_id
            world.spare_clinician, _ = await api.flows.clinician()
            treating = await world.book(
                world.clinician_ids["treating-clinician"], world.callers["patient"]
            )
            world.treating_visit_id = treating.visit.visit_id
            cancelled = await world.book(
                world.clinician_ids["cancelled-clinician"], world.callers["patient"]
            )
            await api.flows.session.CancelVisit(
                S.CancelVisitRequest(
                    request_id=rid(),
                    visit_id=cancelled.visit.visit_id,
                    reason=S.CANCEL_REASON_PATIENT_REQUEST,
                ),
                metadata=world.callers["patient"],
            )
            world.telehealth = await api.grant(patient_id)
            await api.grant(patient_id, SHARING, partner_clinic_id="clinic-a")
            yield world
        finally:
            await api.flows.close()


def calls(world: World, caller_name: str) -> dict[str, Call]:
    """Each RPC about P, ready to be called as anyone (fresh request ids and state)."""
    api, patient_id = world.api, world.patient_id
    session = api.flows.session
    assert world.telehealth is not None
    telehealth = world.telehealth

    async def book(md: Metadata) -> Any:
        # A clinician books into their own schedule, anyone else into a spare clinician's.
        own = world.clinician_ids.get(caller_name, world.spare_clinician)
        return await world.book(own, md)

    async def revoke(md: Metadata) -> Any:
        fresh = await api.grant(patient_id, RECORDING)
        return await api.revoke(fresh, caller=md)

    return {
        "GetPatient": lambda md: session.GetPatient(
            S.GetPatientRequest(patient_id=patient_id), metadata=md
        ),
        "BookVisit": book,
        "GrantConsent(telehealth)": lambda md: api.grant(patient_id, TELEHEALTH, caller=md),
        "GrantConsent(sharing)": lambda md: api.grant(
            patient_id, SHARING, partner_clinic_id="clinic-z", caller=md
        ),
        "RevokeConsent": revoke,
        "GetConsent": lambda md: api.stub.GetConsent(
            C.GetConsentRequest(consent_id=telehealth.consent_id), metadata=md
        ),
        "ListConsents": lambda md: api.stub.ListConsents(
            C.ListConsentsRequest(patient_id=patient_id), metadata=md
        ),
        "CheckConsent": lambda md: api.check(patient_id, TELEHEALTH, caller=md),
        "ListCharges": lambda md: world.billing.ListCharges(
            billing_pb2.ListChargesRequest(patient_id=patient_id), metadata=md
        ),
        "GetPatientStatement": lambda md: world.billing.GetPatientStatement(
            billing_pb2.GetPatientStatementRequest(
                patient_id=patient_id, start_date="2026-01-01", end_date="2026-12-31"
            ),
            metadata=md,
        ),
        "ListPatientAccess": lambda md: session.ListPatientAccess(
            S.ListPatientAccessRequest(patient_id=patient_id), metadata=md
        ),
    }


async def test_every_caller_reaches_exactly_what_the_table_allows(world: World) -> None:
    outcomes: dict[tuple[str, str], str] = {}
    for caller_name in CALLERS:
        md = world.callers[caller_name]
        for rpc, call in calls(world, caller_name).items():
            try:
                answer = await call(md)
            except grpc.aio.AioRpcError as error:
                outcomes[(rpc, caller_name)] = f"{error.code().name}:{reason_of(error)}"
                continue
            outcomes[(rpc, caller_name)] = "OK"
            if rpc == "ListConsents" and caller_name.startswith("partner-"):
                clinic = "clinic-" + caller_name[-1]
                assert all(
                    c.category == SHARING and c.partner_clinic_id == clinic for c in answer.consents
                ), (caller_name, answer)
    wrong = {
        key: got
        for key, got in outcomes.items()
        if (got == "OK") != (key[1] in ALLOWED[key[0]])
        or (got != "OK" and not got.startswith("PERMISSION_DENIED:"))
    }
    assert not wrong, f"unexpected answers (rpc, caller) -> outcome: {wrong}"
    for caller_name in ("unrelated-clinician", "cancelled-clinician"):
        reasons = {got.split(":", 1)[1] for (_, who), got in outcomes.items() if who == caller_name}
        assert reasons <= NO_RELATIONSHIP, (caller_name, reasons)
        assert outcomes[("GetPatient", caller_name)].endswith("NO_CARE_RELATIONSHIP")


async def test_a_partner_clinic_learns_only_its_own_sharing_consent(world: World) -> None:
    clinic_a, clinic_b = world.callers["partner-a"], world.callers["partner-b"]
    api = world.api
    permit = await api.check(world.patient_id, SHARING, "clinic-a", caller=clinic_a)
    assert permit.decision == C.DECISION_PERMIT
    # Clinic B may ask about its own sharing: P has not granted it.
    own = await api.check(world.patient_id, SHARING, "clinic-b", caller=clinic_b)
    assert own.decision != C.DECISION_PERMIT
    # Neither may ask about the other clinic's sharing, nor about anything else.
    for caller, category, clinic in (
        (clinic_b, SHARING, "clinic-a"),
        (clinic_a, SHARING, "clinic-b"),
        (clinic_a, TELEHEALTH, ""),
    ):
        error = await refused(api.check(world.patient_id, category, clinic, caller=caller))
        assert (error.code(), reason_of(error)) == (
            grpc.StatusCode.PERMISSION_DENIED,
            "PARTNER_SCOPE",
        )
    listed = await api.stub.ListConsents(
        C.ListConsentsRequest(patient_id=world.patient_id), metadata=clinic_b
    )
    assert list(listed.consents) == []


async def test_an_unrelated_clinician_cannot_make_a_relationship(world: World) -> None:
    """Finding 2: booking a visit is how a relationship starts, so a clinician cannot book
    one for a patient they do not already treat (at the service, not only at the edge),
    nor book into another clinician's schedule for a patient they do treat."""
    unrelated = world.callers["unrelated-clinician"]
    error = await refused(world.book(world.clinician_ids["unrelated-clinician"], unrelated))
    assert reason_of(error) == "NO_CARE_RELATIONSHIP"
    treating = world.callers["treating-clinician"]
    error = await refused(world.book(world.spare_clinician, treating))
    assert reason_of(error) == "NOT_YOUR_SCHEDULE"
    # Still no relationship: the patient's record stays closed to them.
    error = await refused(
        world.api.flows.session.GetPatient(
            S.GetPatientRequest(patient_id=world.patient_id), metadata=unrelated
        )
    )
    assert reason_of(error) == "NO_CARE_RELATIONSHIP"
    # No consent for a patient who does not exist, even from the patient's own token.
    ghost = f"p-{uuid.uuid4().hex[:10]}"
    error = await refused(world.api.grant(ghost, profile=False))
    assert error.code() == grpc.StatusCode.NOT_FOUND


async def test_every_decision_is_in_the_patients_access_log(world: World) -> None:
    unrelated = world.callers["unrelated-clinician"]
    treating = world.callers["treating-clinician"]
    api = world.api
    await refused(api.grant(world.patient_id, TELEHEALTH, caller=unrelated))
    await api.flows.session.GetPatient(
        S.GetPatientRequest(patient_id=world.patient_id), metadata=treating
    )
    await world.billing.ListCharges(
        billing_pb2.ListChargesRequest(patient_id=world.patient_id),
        metadata=world.callers["billing-staff"],
    )
    # Refusals about a visit name the visit's patient too.
    await refused(
        api.flows.session.GetVisit(
            S.GetVisitRequest(visit_id=world.treating_visit_id), metadata=unrelated
        )
    )
    await refused(
        api.flows.session.ListVisits(
            S.ListVisitsRequest(patient_id=world.patient_id),
            metadata=world.callers["other-patient"],
        )
    )
    log = await api.flows.session.ListPatientAccess(
        S.ListPatientAccessRequest(patient_id=world.patient_id, page_size=500),
        metadata=world.callers["patient"],
    )
    seen = {
        (
            e.access.actor_id,
            e.access.service,
            e.access.method.rsplit("/", 1)[-1],
            e.access.outcome,
            e.access.basis,
        )
        for e in log.entries
    }
    unrelated_id = world.clinician_ids["unrelated-clinician"]
    treating_id = world.clinician_ids["treating-clinician"]
    assert (
        unrelated_id,
        "consent",
        "GrantConsent",
        S.ACCESS_OUTCOME_REFUSED,
        "NO_CARE_RELATIONSHIP",
    ) in seen
    assert (
        treating_id,
        "session",
        "GetPatient",
        S.ACCESS_OUTCOME_ALLOWED,
        "care_relationship",
    ) in seen
    assert ("clerk-1", "billing", "ListCharges", S.ACCESS_OUTCOME_ALLOWED, "billing_staff") in seen
    assert (
        unrelated_id,
        "session",
        "GetVisit",
        S.ACCESS_OUTCOME_REFUSED,
        "NOT_PARTICIPANT",
    ) in seen
    assert any(
        service == "session" and method == "ListVisits" and outcome == S.ACCESS_OUTCOME_REFUSED
        for _, service, method, outcome, _ in seen
    )
    assert all(e.access.patient_id == world.patient_id for e in log.entries)
    sequences = [e.sequence for e in log.entries]
    assert sequences == sorted(sequences, reverse=True)
