"""BillingService as a real process, on SQLite and PostgreSQL: one charge per visit,
coding and pricing, the charge's life, statements, the FHIR Claim, and bad input."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Awaitable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import grpc
import pytest
from fhir.resources.R4B.claim import Claim

from telemesh.billing.v1 import billing_pb2
from telemesh.errors import reason_of
from tests.support.billing import Billing, completion, new_id
from tests.support.errors import refused, violations_of
from tests.support.flows import rid

BILLABLE = billing_pb2.CHARGE_STATE_BILLABLE
BILLED = billing_pb2.CHARGE_STATE_BILLED
VOIDED = billing_pb2.CHARGE_STATE_VOIDED
NOT_BILLABLE = billing_pb2.CHARGE_STATE_NOT_BILLABLE


def _coded(charge: billing_pb2.Charge) -> tuple[Any, ...]:
    """The fields that must never change after creation."""
    return (
        charge.charge_id,
        charge.visit_id,
        charge.patient_id,
        charge.rule_set,
        charge.procedure_code,
        tuple(charge.modifiers),
        charge.place_of_service,
        charge.service_date,
        charge.units,
        charge.amount.amount_minor,
        charge.amount.currency_code,
        tuple(charge.diagnosis_codes),
        tuple(charge.diagnosis_pointers),
        charge.connected_seconds,
        charge.create_time.ToJsonString(),
    )


# --- recording completions -----------------------------------------------------------


async def test_a_completion_becomes_a_coded_priced_charge(billing: Billing) -> None:
    request = completion(connected_seconds=25 * 60, diagnosis_codes=["J06.9", "R05.9"])
    reply = await billing.record(request)
    assert reply.created
    charge = reply.charge
    assert charge.state == BILLABLE
    assert charge.visit_id == request.visit_id
    assert charge.patient_id == request.patient_id
    assert charge.rule_set == "medicare-em@2025.1"
    assert charge.procedure_code == "99213"
    assert list(charge.modifiers) == []
    assert charge.place_of_service == "10"
    assert charge.units == 1
    assert charge.amount == billing_pb2.Money(currency_code="USD", amount_minor=14000)
    assert charge.fee_schedule == "telemesh-default@2025.1"
    assert list(charge.diagnosis_codes) == ["J06.9", "R05.9"]
    assert list(charge.diagnosis_pointers) == [1, 2]
    assert charge.service_date == request.service_date
    assert [(h.from_state, h.to_state, h.actor_role, h.actor_id) for h in charge.history] == [
        (billing_pb2.CHARGE_STATE_UNSPECIFIED, BILLABLE, "service", "session")
    ]
    fetched = await billing.stub.GetCharge(
        billing_pb2.GetChargeRequest(charge_id=charge.charge_id), metadata=billing.billing
    )
    assert fetched.charge == charge


async def test_audio_only_elsewhere_gets_modifier_93_and_place_of_service_02(
    billing: Billing,
) -> None:
    reply = await billing.record(
        completion(
            connected_seconds=45 * 60,
            new_patient=True,
            audio_only=True,
            patient_location=billing_pb2.PATIENT_LOCATION_OTHER,
        )
    )
    assert (reply.charge.procedure_code, list(reply.charge.modifiers)) == ("99204", ["93"])
    assert reply.charge.place_of_service == "02"
    assert reply.charge.amount.amount_minor == 25500


async def test_the_payer_mapping_picks_the_cpt_telemedicine_rule_set(billing: Billing) -> None:
    mapped = await billing.record(
        completion(payer_id="acme-health", audio_only=True, connected_seconds=25 * 60)
    )
    assert mapped.charge.rule_set == "cpt-telemedicine@2025.1"
    assert mapped.charge.procedure_code == "98013"
    assert list(mapped.charge.modifiers) == []
    assert mapped.charge.payer_id == "acme-health"
    unmapped = await billing.record(completion(payer_id="other-payer", audio_only=True))
    assert unmapped.charge.rule_set == "medicare-em@2025.1"
    assert unmapped.charge.procedure_code == "99213"


async def test_below_the_lowest_threshold_is_a_not_billable_record(billing: Billing) -> None:
    request = completion(connected_seconds=9 * 60 + 59)
    reply = await billing.record(request)
    charge = reply.charge
    assert reply.created
    assert charge.state == NOT_BILLABLE
    assert charge.procedure_code == ""
    assert charge.amount.amount_minor == 0
    assert charge.not_billable_reason.startswith("below-minimum-time: 599 s connected")
    # What an app words: the code and the time the lowest code needs.
    assert charge.not_billable_code == billing_pb2.NOT_BILLABLE_CODE_BELOW_MINIMUM_TIME
    assert charge.minimum_seconds == 600
    # It is kept, not dropped: found by its visit, and nothing can bill or claim it.
    assert [c.charge_id for c in await billing.charges_of_visit(request.visit_id)] == [
        charge.charge_id
    ]
    calls: list[tuple[Awaitable[Any], str]] = [
        (
            billing.stub.MarkChargeBilled(
                billing_pb2.MarkChargeBilledRequest(request_id=rid(), charge_id=charge.charge_id),
                metadata=billing.billing,
            ),
            "CHARGE_NOT_BILLABLE",
        ),
        (
            billing.stub.VoidCharge(
                billing_pb2.VoidChargeRequest(
                    request_id=rid(), charge_id=charge.charge_id, reason="duplicate"
                ),
                metadata=billing.billing,
            ),
            "CHARGE_NOT_BILLABLE",
        ),
        (
            billing.stub.ExportClaim(
                billing_pb2.ExportClaimRequest(charge_id=charge.charge_id),
                metadata=billing.billing,
            ),
            "CHARGE_NOT_CLAIMABLE",
        ),
    ]
    for call, reason in calls:
        error = await refused(call)
        assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert reason_of(error) == reason


# --- exactly one charge per visit --------------------------------------------------------


async def test_the_same_completion_twice_returns_the_first_charge(billing: Billing) -> None:
    request = completion()
    first = await billing.record(request)
    again = await billing.record(request)
    assert first.created
    assert not again.created
    assert again.charge == first.charge
    assert len(await billing.charges_of_visit(request.visit_id)) == 1


async def test_concurrent_deliveries_of_one_visit_make_exactly_one_charge(
    billing: Billing,
) -> None:
    request = completion()
    replies = await asyncio.gather(*(billing.record(request) for _ in range(32)))
    assert sum(reply.created for reply in replies) == 1
    assert len({reply.charge.charge_id for reply in replies}) == 1
    charges = await billing.charges_of_visit(request.visit_id)
    assert [c.charge_id for c in charges] == [replies[0].charge.charge_id]
    assert len(charges[0].history) == 1


async def test_concurrent_deliveries_of_many_visits_make_one_charge_each(
    billing: Billing,
) -> None:
    requests = [completion() for _ in range(12)]
    replies = await asyncio.gather(*(billing.record(r) for r in requests * 4))
    assert sum(reply.created for reply in replies) == len(requests)
    for request in requests:
        assert len(await billing.charges_of_visit(request.visit_id)) == 1


async def test_two_versions_of_one_completion_arriving_together_make_one_charge(
    billing: Billing,
) -> None:
    # Completions that arrive together are recorded in one transaction: the first
    # version of a visit's completion in it wins, the other is a conflict, and the
    # visits around them are charged as if each had come alone.
    others = [completion() for _ in range(10)]
    first = completion(connected_seconds=1500)
    second = billing_pb2.RecordVisitCompletionRequest()
    second.CopyFrom(first)
    second.connected_seconds = 3000
    calls = [billing.record(r) for r in others[:5]]
    calls += [billing.record(first), billing.record(second)]
    calls += [billing.record(r) for r in others[5:]]
    results = await asyncio.gather(*calls, return_exceptions=True)
    versions = results[5:7]
    conflicts = [r for r in versions if isinstance(r, grpc.aio.AioRpcError)]
    assert len(conflicts) == 1, versions
    assert conflicts[0].code() == grpc.StatusCode.ALREADY_EXISTS
    assert reason_of(conflicts[0]) == "VISIT_COMPLETION_CONFLICT"
    [winner] = [r for r in versions if not isinstance(r, BaseException)]
    assert winner.created
    charges = await billing.charges_of_visit(first.visit_id)
    assert [c.charge_id for c in charges] == [winner.charge.charge_id]
    around = results[:5] + results[7:]
    assert all(not isinstance(r, BaseException) and r.created for r in around), around
    for request in others:
        assert len(await billing.charges_of_visit(request.visit_id)) == 1


async def test_a_different_completion_for_a_recorded_visit_is_a_conflict(
    billing: Billing,
) -> None:
    request = completion(connected_seconds=1500)
    first = await billing.record(request)
    changed = billing_pb2.RecordVisitCompletionRequest()
    changed.CopyFrom(request)
    changed.connected_seconds = 3000
    error = await refused(billing.record(changed))
    assert error.code() == grpc.StatusCode.ALREADY_EXISTS
    assert reason_of(error) == "VISIT_COMPLETION_CONFLICT"
    charges = await billing.charges_of_visit(request.visit_id)
    assert [_coded(c) for c in charges] == [_coded(first.charge)]


# --- bad input -----------------------------------------------------------------------------

_NOW = datetime.now(UTC)
BAD_COMPLETIONS: dict[str, tuple[dict[str, Any], str]] = {
    "negative-duration": ({"connected_seconds": -1}, "connected_seconds"),
    "absurd-duration": ({"connected_seconds": 86_401}, "connected_seconds"),
    "lower-case-icd10": ({"diagnosis_codes": ["j06.9"]}, "diagnosis_codes[0]"),
    "short-icd10": ({"diagnosis_codes": ["J0"]}, "diagnosis_codes[0]"),
    "digit-first-icd10": ({"diagnosis_codes": ["106.9"]}, "diagnosis_codes[0]"),
    "long-icd10": ({"diagnosis_codes": ["S72.00123"]}, "diagnosis_codes[0]"),
    "trailing-dot-icd10": ({"diagnosis_codes": ["J06."]}, "diagnosis_codes[0]"),
    "second-icd10-bad": ({"diagnosis_codes": ["J06.9", "free text"]}, "diagnosis_codes[1]"),
    "no-diagnosis": ({"diagnosis_codes": []}, "diagnosis_codes"),
    "thirteen-diagnoses": (
        {"diagnosis_codes": [f"J0{i % 10}.{i}" for i in range(13)]},
        "diagnosis_codes",
    ),
    "duplicate-diagnosis": ({"diagnosis_codes": ["J06.9", "J06.9"]}, "diagnosis_codes"),
    "no-visit-id": ({"visit_id": ""}, "visit_id"),
    "bad-patient-id": ({"patient_id": "a b"}, "patient_id"),
    "no-location": (
        {"patient_location": billing_pb2.PATIENT_LOCATION_UNSPECIFIED},
        "patient_location",
    ),
    "bad-service-date": ({"service_date": "2026-02-30"}, "service_date"),
    "service-date-long-before-completion": (
        {"service_date": (_NOW - timedelta(days=40)).date().isoformat()},
        "service_date",
    ),
    "service-date-after-completion": (
        {"service_date": (_NOW + timedelta(days=2)).date().isoformat()},
        "service_date",
    ),
    "absurd-id": ({"clinician_id": "c" * 101}, "clinician_id"),
    "completion-in-the-future": (
        {
            "complete_time": _NOW + timedelta(days=2),
            "service_date": (_NOW + timedelta(days=2)).date().isoformat(),
        },
        "complete_time",
    ),
}


@pytest.mark.parametrize("name", list(BAD_COMPLETIONS))
async def test_a_bad_completion_is_refused_and_nothing_is_written(
    billing: Billing, name: str
) -> None:
    fields, field = BAD_COMPLETIONS[name]
    visit_id = fields.get("visit_id", new_id("visit"))
    request = completion(**{"visit_id": visit_id, **fields})
    error = await refused(billing.record(request))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field in violations_of(error)
    if visit_id:
        assert await billing.charges_of_visit(visit_id) == []


async def test_every_bad_field_is_reported_at_once(billing: Billing) -> None:
    request = completion(
        connected_seconds=-5, diagnosis_codes=["bad"], patient_id="", service_date="yesterday"
    )
    error = await refused(billing.record(request))
    assert {"connected_seconds", "diagnosis_codes[0]", "patient_id", "service_date"} <= set(
        violations_of(error)
    )
    assert await billing.charges_of_visit(request.visit_id) == []


async def test_unknown_and_malformed_charge_ids(billing: Billing) -> None:
    unknown = str(uuid.uuid4())
    calls: list[Awaitable[Any]] = [
        billing.stub.GetCharge(
            billing_pb2.GetChargeRequest(charge_id=unknown), metadata=billing.billing
        ),
        billing.stub.ExportClaim(
            billing_pb2.ExportClaimRequest(charge_id=unknown), metadata=billing.billing
        ),
        billing.stub.MarkChargeBilled(
            billing_pb2.MarkChargeBilledRequest(request_id=rid(), charge_id=unknown),
            metadata=billing.billing,
        ),
        billing.stub.VoidCharge(
            billing_pb2.VoidChargeRequest(request_id=rid(), charge_id=unknown, reason="duplicate"),
            metadata=billing.billing,
        ),
    ]
    for call in calls:
        error = await refused(call)
        assert error.code() == grpc.StatusCode.NOT_FOUND
        assert reason_of(error) == "CHARGE_NOT_FOUND"
    error = await refused(
        billing.stub.GetCharge(
            billing_pb2.GetChargeRequest(charge_id="nope"), metadata=billing.billing
        )
    )
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "charge_id" in violations_of(error)


# --- the charge's life -------------------------------------------------------------------


async def test_billed_then_voided_with_history_and_unchanged_codes(billing: Billing) -> None:
    created = (await billing.record(completion())).charge
    mark = billing_pb2.MarkChargeBilledRequest(request_id=rid(), charge_id=created.charge_id)
    billed = (await billing.stub.MarkChargeBilled(mark, metadata=billing.billing)).charge
    assert billed.state == BILLED
    # A retry of the same request is the first answer and changes nothing more.
    retried = (await billing.stub.MarkChargeBilled(mark, metadata=billing.billing)).charge
    assert retried == billed
    again = await refused(
        billing.stub.MarkChargeBilled(
            billing_pb2.MarkChargeBilledRequest(request_id=rid(), charge_id=created.charge_id),
            metadata=billing.billing,
        )
    )
    assert (again.code(), reason_of(again)) == (
        grpc.StatusCode.FAILED_PRECONDITION,
        "CHARGE_ALREADY_BILLED",
    )

    void = billing_pb2.VoidChargeRequest(
        request_id=rid(), charge_id=created.charge_id, reason="coding-error"
    )
    voided = (await billing.stub.VoidCharge(void, metadata=billing.billing)).charge
    assert (voided.state, voided.void_reason) == (VOIDED, "coding-error")
    twice = await refused(
        billing.stub.VoidCharge(
            billing_pb2.VoidChargeRequest(
                request_id=rid(), charge_id=created.charge_id, reason="duplicate"
            ),
            metadata=billing.billing,
        )
    )
    assert (twice.code(), reason_of(twice)) == (
        grpc.StatusCode.FAILED_PRECONDITION,
        "CHARGE_ALREADY_VOIDED",
    )

    final = (
        await billing.stub.GetCharge(
            billing_pb2.GetChargeRequest(charge_id=created.charge_id), metadata=billing.billing
        )
    ).charge
    assert _coded(final) == _coded(created)
    assert final.void_reason == "coding-error"
    assert [(h.from_state, h.to_state, h.reason, h.actor_id) for h in final.history] == [
        (billing_pb2.CHARGE_STATE_UNSPECIFIED, BILLABLE, "", "session"),
        (BILLABLE, BILLED, "", "biller-1"),
        (BILLED, VOIDED, "coding-error", "biller-1"),
    ]


async def test_a_void_needs_a_reason_code(billing: Billing) -> None:
    charge = (await billing.record(completion())).charge
    for reason in ("", "Patient said she felt worse", "x"):
        error = await refused(
            billing.stub.VoidCharge(
                billing_pb2.VoidChargeRequest(
                    request_id=rid(), charge_id=charge.charge_id, reason=reason
                ),
                metadata=billing.billing,
            )
        )
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "reason" in violations_of(error)
    unchanged = await billing.charges_of_visit(charge.visit_id)
    assert [(c.state, len(c.history)) for c in unchanged] == [(BILLABLE, 1)]


async def test_concurrent_voids_void_once(billing: Billing) -> None:
    charge = (await billing.record(completion())).charge
    results = await asyncio.gather(
        *(
            billing.stub.VoidCharge(
                billing_pb2.VoidChargeRequest(
                    request_id=rid(), charge_id=charge.charge_id, reason="duplicate"
                ),
                metadata=billing.billing,
            )
            for _ in range(8)
        ),
        return_exceptions=True,
    )
    assert sum(isinstance(result, billing_pb2.VoidChargeResponse) for result in results) == 1
    for result in results:
        if isinstance(result, grpc.aio.AioRpcError):
            assert result.code() == grpc.StatusCode.FAILED_PRECONDITION
    [final] = await billing.charges_of_visit(charge.visit_id)
    assert [h.to_state for h in final.history] == [BILLABLE, VOIDED]


# --- lists, statements, claims -------------------------------------------------------------


async def test_list_charges_pages_newest_first_and_filters_by_state(billing: Billing) -> None:
    patient = new_id("patient")
    created = [
        (await billing.record(completion(patient_id=patient))).charge.charge_id for _ in range(5)
    ]
    seen: list[str] = []
    token = ""
    tokens: list[str] = []
    pages = 0
    while True:
        reply = await billing.stub.ListCharges(
            billing_pb2.ListChargesRequest(patient_id=patient, page_size=2, page_token=token),
            metadata=billing.patient(patient),
        )
        seen += [c.charge_id for c in reply.charges]
        pages += 1
        token = reply.next_page_token
        if not token:
            break
        tokens.append(token)
    assert (seen, pages) == (created[::-1], 3)
    await billing.stub.VoidCharge(
        billing_pb2.VoidChargeRequest(request_id=rid(), charge_id=created[1], reason="duplicate"),
        metadata=billing.billing,
    )
    voided = await billing.stub.ListCharges(
        billing_pb2.ListChargesRequest(patient_id=patient, states=[VOIDED]),
        metadata=billing.billing,
    )
    assert [c.charge_id for c in voided.charges] == [created[1]]
    # A token belongs to its query; garbage is no token at all.
    for other_query in (
        billing_pb2.ListChargesRequest(patient_id=new_id("patient"), page_token=tokens[0]),
        billing_pb2.ListChargesRequest(patient_id=patient, page_token="garbage!"),
    ):
        error = await refused(billing.stub.ListCharges(other_query, metadata=billing.billing))
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "page_token" in violations_of(error)


async def test_a_patient_statement_for_a_period(billing: Billing) -> None:
    patient = new_id("patient")
    today = datetime.now(UTC).replace(hour=12)

    async def visit(days_ago: int, seconds: int) -> billing_pb2.Charge:
        when = today - timedelta(days=days_ago)
        request = completion(
            patient_id=patient,
            complete_time=when,
            service_date=when.date().isoformat(),
            connected_seconds=seconds,
        )
        return (await billing.record(request)).charge

    old = await visit(40, 1500)  # outside the period
    first = await visit(20, 1500)  # 99213: 14000
    second = await visit(10, 2500)  # 99215: 27500, voided below
    await visit(5, 120)  # not billable: not on the statement
    third = await visit(2, 1800)  # 99214: 19500
    other = today - timedelta(days=20)  # another patient's visit on the same day
    await billing.record(completion(complete_time=other, service_date=other.date().isoformat()))
    await billing.stub.VoidCharge(
        billing_pb2.VoidChargeRequest(
            request_id=rid(), charge_id=second.charge_id, reason="duplicate"
        ),
        metadata=billing.billing,
    )
    start = (today - timedelta(days=30)).date().isoformat()
    end = today.date().isoformat()
    request = billing_pb2.GetPatientStatementRequest(
        patient_id=patient, start_date=start, end_date=end
    )
    for caller in (billing.patient(patient), billing.billing):
        statement = await billing.stub.GetPatientStatement(request, metadata=caller)
        assert [
            (line.charge_id, line.amount.amount_minor, line.state) for line in statement.lines
        ] == [
            (first.charge_id, 14000, BILLABLE),
            (second.charge_id, 0, VOIDED),
            (third.charge_id, 19500, BILLABLE),
        ]
        assert statement.total == billing_pb2.Money(currency_code="USD", amount_minor=33500)
        assert (statement.start_date, statement.end_date) == (start, end)
    assert old.charge_id not in {line.charge_id for line in statement.lines}

    empty = await billing.stub.GetPatientStatement(
        billing_pb2.GetPatientStatementRequest(start_date=start, end_date=end),
        metadata=billing.patient(new_id("patient")),
    )
    assert (list(empty.lines), empty.total.amount_minor, empty.total.currency_code) == (
        [],
        0,
        "USD",
    )

    for start_date, end_date, field in (
        (end, start, "end_date"),
        ("2024-01-01", "2025-06-01", "end_date"),
        ("01/02/2025", end, "start_date"),
    ):
        error = await refused(
            billing.stub.GetPatientStatement(
                billing_pb2.GetPatientStatementRequest(
                    patient_id=patient, start_date=start_date, end_date=end_date
                ),
                metadata=billing.billing,
            )
        )
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert field in violations_of(error)


async def test_the_fhir_claim_export_parses_back(billing: Billing) -> None:
    request = completion(
        connected_seconds=35 * 60,
        new_patient=True,
        audio_only=True,
        payer_id="other-payer",
        diagnosis_codes=["E11.9", "I10", "Z79.4", "J45.909", "R51.9"],
    )
    charge = (await billing.record(request)).charge
    for caller in (billing.billing, billing.patient(request.patient_id)):
        reply = await billing.stub.ExportClaim(
            billing_pb2.ExportClaimRequest(charge_id=charge.charge_id), metadata=caller
        )
        claim = Claim.model_validate_json(reply.claim_json)  # the FHIR library parses it
    assert claim.id == charge.charge_id
    # The content, read from the JSON itself.
    raw = json.loads(reply.claim_json)
    assert raw["resourceType"] == "Claim"
    assert (raw["status"], raw["use"]) == ("active", "claim")
    assert raw["type"]["coding"][0]["code"] == "professional"
    assert raw["patient"]["identifier"]["value"] == request.patient_id
    assert raw["provider"]["identifier"]["value"] == request.practice_id
    assert raw["insurer"]["identifier"]["value"] == "other-payer"
    assert raw["careTeam"][0]["provider"]["identifier"]["value"] == request.clinician_id
    assert [d["diagnosisCodeableConcept"]["coding"][0] for d in raw["diagnosis"]] == [
        {"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": code}
        for code in request.diagnosis_codes
    ]
    [item] = raw["item"]
    assert item["productOrService"]["coding"][0] == {
        "system": "http://www.ama-assn.org/go/cpt",
        "code": "99203",
    }
    assert [m["coding"][0]["code"] for m in item["modifier"]] == ["93"]
    assert item["locationCodeableConcept"]["coding"][0]["code"] == "10"
    assert item["diagnosisSequence"] == [1, 2, 3, 4]
    assert item["servicedDate"] == charge.service_date
    assert item["quantity"]["value"] == 1
    assert Decimal(str(item["net"]["value"])) == Decimal("170.00")
    assert raw["total"] == {"value": 170.0, "currency": "USD"}

    await billing.stub.VoidCharge(
        billing_pb2.VoidChargeRequest(
            request_id=rid(), charge_id=charge.charge_id, reason="duplicate"
        ),
        metadata=billing.billing,
    )
    error = await refused(
        billing.stub.ExportClaim(
            billing_pb2.ExportClaimRequest(charge_id=charge.charge_id), metadata=billing.billing
        )
    )
    assert (error.code(), reason_of(error)) == (
        grpc.StatusCode.FAILED_PRECONDITION,
        "CHARGE_NOT_CLAIMABLE",
    )
