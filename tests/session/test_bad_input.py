"""Bad input: INVALID_ARGUMENT with field violations or NOT_FOUND, nothing written."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import grpc
import pytest

from telemesh.session.v1 import session_pb2
from tests.support.errors import bad_fields
from tests.support.flows import Flows, rid, ts

P = session_pb2


async def _expect(call: object, code: grpc.StatusCode) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call  # type: ignore[misc]
    assert caught.value.code() == code, caught.value.details()
    return caught.value


async def test_unknown_time_zone(flows: Flows) -> None:
    md = flows.tokens.clinician("c-tz")
    error = await _expect(
        flows.session.CreateClinician(
            P.CreateClinicianRequest(
                request_id=rid(),
                clinician=P.Clinician(
                    display_name="Dr X", time_zone="Atlantis/Capital", practice_id="p1"
                ),
            ),
            metadata=md,
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    assert "clinician.time_zone" in bad_fields(error)
    # Nothing was written: the same id can be created properly afterwards.
    await flows.session.CreateClinician(
        P.CreateClinicianRequest(
            request_id=rid(),
            clinician=P.Clinician(
                display_name="Dr X", time_zone="Asia/Kathmandu", practice_id="p1"
            ),
        ),
        metadata=md,
    )


async def test_slot_ranges(flows: Flows) -> None:
    clinician_id, md = await flows.clinician()
    now = datetime.now(UTC)
    cases = [
        (now + timedelta(hours=2), now + timedelta(hours=1), "end_time"),  # end before start
        (now, now + timedelta(days=90), "end_time"),  # too long
        (now - timedelta(days=10), now - timedelta(days=9), "end_time"),  # in the past
    ]
    for start, end, field in cases:
        error = await _expect(
            flows.session.ListSlots(
                P.ListSlotsRequest(
                    clinician_id=clinician_id, start_time=ts(start), end_time=ts(end)
                ),
                metadata=md,
            ),
            grpc.StatusCode.INVALID_ARGUMENT,
        )
        assert field in bad_fields(error)
    error = await _expect(
        flows.session.ListSlots(
            P.ListSlotsRequest(clinician_id=clinician_id, start_time=ts(now)), metadata=md
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    assert "end_time" in bad_fields(error)


@pytest.mark.parametrize("size", [-1, 501])
async def test_page_size_out_of_range(flows: Flows, size: int) -> None:
    _, md = await flows.patient()
    error = await _expect(
        flows.session.ListVisits(P.ListVisitsRequest(page_size=size), metadata=md),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    assert "page_size" in bad_fields(error)
    error = await _expect(
        flows.session.ListVisits(P.ListVisitsRequest(page_token="not-a-token!"), metadata=md),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    assert "page_token" in bad_fields(error)


async def test_booking_in_the_past_or_off_the_grid(flows: Flows) -> None:
    clinician_id, _ = await flows.clinician()
    patient_id, md = await flows.patient()
    past = (datetime.now(UTC) - timedelta(hours=1)).replace(minute=0, second=0, microsecond=0)
    for start, field in (
        (past, "start_time"),
        (past + timedelta(hours=3, minutes=2), "start_time"),
    ):
        error = await _expect(
            flows.session.BookVisit(
                P.BookVisitRequest(
                    request_id=rid(),
                    clinician_id=clinician_id,
                    patient_id=patient_id,
                    start_time=ts(start),
                ),
                metadata=md,
            ),
            grpc.StatusCode.INVALID_ARGUMENT,
        )
        assert field in bad_fields(error)
    error = await _expect(
        flows.session.BookVisit(
            P.BookVisitRequest(clinician_id=clinician_id, patient_id=patient_id), metadata=md
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    assert "request_id" in bad_fields(error)
    error = await _expect(
        flows.session.BookVisit(
            P.BookVisitRequest(
                request_id="not-a-uuid", clinician_id=clinician_id, patient_id=patient_id
            ),
            metadata=md,
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    assert "request_id" in bad_fields(error)
    error = await _expect(
        flows.session.BookVisit(
            P.BookVisitRequest(request_id=rid(), clinician_id="", patient_id=patient_id),
            metadata=md,
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    assert {"clinician_id", "start_time"} <= bad_fields(error)
    listing = await flows.session.ListVisits(P.ListVisitsRequest(), metadata=md)
    assert not listing.visits, "nothing was booked"


async def test_unknown_ids_are_not_found(flows: Flows) -> None:
    patient_id, md = await flows.patient()
    start = (datetime.now(UTC) + timedelta(hours=1)).replace(minute=0, second=0, microsecond=0)
    await _expect(
        flows.session.BookVisit(
            P.BookVisitRequest(
                request_id=rid(),
                clinician_id="c-nobody",
                patient_id=patient_id,
                start_time=ts(start),
            ),
            metadata=md,
        ),
        grpc.StatusCode.NOT_FOUND,
    )
    await _expect(
        flows.session.GetVisit(P.GetVisitRequest(visit_id=rid()), metadata=md),
        grpc.StatusCode.NOT_FOUND,
    )
    await _expect(
        flows.session.GetClinician(P.GetClinicianRequest(clinician_id="c-nobody"), metadata=md),
        grpc.StatusCode.NOT_FOUND,
    )


async def test_a_bad_diagnosis_code_completes_nothing(flows: Flows) -> None:
    visit = await flows.book()
    await flows.check_in(visit)
    await flows.admit(visit)
    error = await _expect(
        flows.session.CompleteVisit(
            P.CompleteVisitRequest(
                request_id=rid(), visit_id=visit.visit_id, diagnosis_codes=["J06.9", "headache"]
            ),
            metadata=visit.clinician,
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    assert "diagnosis_codes[1]" in bad_fields(error)
    reply = await flows.session.GetVisit(
        P.GetVisitRequest(visit_id=visit.visit_id), metadata=visit.clinician
    )
    assert reply.visit.state == P.VisitState.VISIT_STATE_IN_PROGRESS
