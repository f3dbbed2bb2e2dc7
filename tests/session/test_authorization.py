"""Who may do what: a patient only their own visits, a clinician only their own
schedule and visits; anything else is PERMISSION_DENIED."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import grpc
import pytest

from telemesh.session.v1 import session_pb2
from tests.support.flows import ALL_WEEK, Flows, Visit, rid, ts

P = session_pb2
Md = tuple[tuple[str, str], ...]


@dataclass
class World:
    visit: Visit
    stranger_patient: Md
    stranger_clinician: Md
    billing_service: Md


Call = Callable[[Flows, World, Md], Awaitable[object]]


def _calls() -> dict[str, Call]:
    def v(w: World) -> str:
        return w.visit.visit_id

    return {
        "GetPatient": lambda f, w, md: f.session.GetPatient(
            P.GetPatientRequest(patient_id=w.visit.patient_id), metadata=md
        ),
        "CreatePatient(for another)": lambda f, w, md: f.session.CreatePatient(
            P.CreatePatientRequest(
                request_id=rid(),
                patient=P.Patient(patient_id=w.visit.patient_id + "-x", display_name="X"),
            ),
            metadata=md,
        ),
        "CreateClinician(for another)": lambda f, w, md: f.session.CreateClinician(
            P.CreateClinicianRequest(
                request_id=rid(),
                clinician=P.Clinician(
                    clinician_id=w.visit.clinician_id + "-x",
                    display_name="X",
                    time_zone="UTC",
                    practice_id="p",
                ),
            ),
            metadata=md,
        ),
        "SetWeeklyAvailability": lambda f, w, md: f.session.SetWeeklyAvailability(
            P.SetWeeklyAvailabilityRequest(
                request_id=rid(), clinician_id=w.visit.clinician_id, hours=ALL_WEEK, slot_minutes=5
            ),
            metadata=md,
        ),
        "GetWeeklyAvailability": lambda f, w, md: f.session.GetWeeklyAvailability(
            P.GetWeeklyAvailabilityRequest(clinician_id=w.visit.clinician_id), metadata=md
        ),
        "AddAvailabilityException": lambda f, w, md: f.session.AddAvailabilityException(
            P.AddAvailabilityExceptionRequest(
                request_id=rid(),
                exception=P.AvailabilityException(
                    clinician_id=w.visit.clinician_id,
                    local_date="2030-01-01",
                    kind=P.AVAILABILITY_EXCEPTION_KIND_TIME_OFF,
                ),
            ),
            metadata=md,
        ),
        "ListAvailabilityExceptions": lambda f, w, md: f.session.ListAvailabilityExceptions(
            P.ListAvailabilityExceptionsRequest(
                clinician_id=w.visit.clinician_id,
                start_local_date="2030-01-01",
                end_local_date="2030-01-02",
            ),
            metadata=md,
        ),
        "BookVisit(for another patient)": lambda f, w, md: f.session.BookVisit(
            P.BookVisitRequest(
                request_id=rid(),
                clinician_id=w.visit.clinician_id,
                patient_id=w.visit.patient_id,
                start_time=ts(w.visit.start_time + timedelta(minutes=30)),
            ),
            metadata=md,
        ),
        "GetVisit": lambda f, w, md: f.session.GetVisit(
            P.GetVisitRequest(visit_id=v(w)), metadata=md
        ),
        "ListVisits(of another)": lambda f, w, md: f.session.ListVisits(
            P.ListVisitsRequest(patient_id=w.visit.patient_id, clinician_id=w.visit.clinician_id),
            metadata=md,
        ),
        "CancelVisit": lambda f, w, md: f.session.CancelVisit(
            P.CancelVisitRequest(request_id=rid(), visit_id=v(w), reason=P.CANCEL_REASON_OTHER),
            metadata=md,
        ),
        "RescheduleVisit": lambda f, w, md: f.session.RescheduleVisit(
            P.RescheduleVisitRequest(
                request_id=rid(),
                visit_id=v(w),
                new_start_time=ts(w.visit.start_time + timedelta(minutes=40)),
            ),
            metadata=md,
        ),
        "MarkNoShow": lambda f, w, md: f.session.MarkNoShow(
            P.MarkNoShowRequest(request_id=rid(), visit_id=v(w)), metadata=md
        ),
        "CheckIn": lambda f, w, md: f.session.CheckIn(
            P.CheckInRequest(
                request_id=rid(), visit_id=v(w), patient_location=P.PATIENT_LOCATION_HOME
            ),
            metadata=md,
        ),
        "AdmitPatient": lambda f, w, md: f.session.AdmitPatient(
            P.AdmitPatientRequest(request_id=rid(), visit_id=v(w)), metadata=md
        ),
        "CompleteVisit": lambda f, w, md: f.session.CompleteVisit(
            P.CompleteVisitRequest(request_id=rid(), visit_id=v(w), diagnosis_codes=["J06.9"]),
            metadata=md,
        ),
        "RecordConnectionEvent": lambda f, w, md: f.session.RecordConnectionEvent(
            P.RecordConnectionEventRequest(
                request_id=rid(),
                visit_id=v(w),
                kind=P.CONNECTION_EVENT_KIND_CONNECTED,
                event_time=ts(datetime.now(UTC)),
            ),
            metadata=md,
        ),
        "IssueJoinToken": lambda f, w, md: f.session.IssueJoinToken(
            P.IssueJoinTokenRequest(visit_id=v(w)), metadata=md
        ),
    }


CALLS = _calls()
OUTSIDERS = ["stranger_patient", "stranger_clinician", "billing_service"]


@pytest.fixture
async def world(flows: Flows) -> World:
    visit = await flows.book()
    _, stranger_patient = await flows.patient()
    _, stranger_clinician = await flows.clinician()
    return World(visit, stranger_patient, stranger_clinician, flows.tokens.service("billing"))


@pytest.mark.parametrize("outsider", OUTSIDERS)
@pytest.mark.parametrize("rpc", list(CALLS))
async def test_outsiders_are_denied(flows: Flows, world: World, rpc: str, outsider: str) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await CALLS[rpc](flows, world, getattr(world, outsider))
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED, caught.value.details()


@pytest.mark.parametrize(
    ("rpc", "who"),
    [
        ("CheckIn", "clinician"),  # only the patient checks in
        ("AdmitPatient", "patient"),  # only the clinician admits
        ("CompleteVisit", "patient"),
        ("MarkNoShow", "patient"),
        ("SetWeeklyAvailability", "patient"),
        ("GetWeeklyAvailability", "patient"),
        ("RecordConnectionEvent", "clinician"),
    ],
)
async def test_participants_keep_to_their_role(
    flows: Flows, world: World, rpc: str, who: str
) -> None:
    md = world.visit.patient if who == "patient" else world.visit.clinician
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await CALLS[rpc](flows, world, md)
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED


async def test_participants_and_admins_read_the_visit(flows: Flows, world: World) -> None:
    for md in (
        world.visit.patient,
        world.visit.clinician,
        flows.tokens.role("admin", "ops-1"),
        flows.tokens.service("signaling"),
    ):
        reply = await flows.session.GetVisit(
            P.GetVisitRequest(visit_id=world.visit.visit_id), metadata=md
        )
        assert reply.visit.visit_id == world.visit.visit_id
    # The clinician may read the patient's profile; the patient theirs.
    for md in (world.visit.patient, world.visit.clinician):
        profile = await flows.session.GetPatient(
            P.GetPatientRequest(patient_id=world.visit.patient_id), metadata=md
        )
        assert profile.patient.display_name == "Pat Example"


async def test_clinician_phi_is_shown_only_to_that_clinician(flows: Flows, world: World) -> None:
    request = P.GetClinicianRequest(clinician_id=world.visit.clinician_id)
    public = await flows.session.GetClinician(request, metadata=world.visit.patient)
    assert public.clinician.display_name == ""
    assert public.clinician.time_zone == "UTC"
    own = await flows.session.GetClinician(request, metadata=world.visit.clinician)
    assert own.clinician.display_name == "Dr. Ada Quill"


async def test_patients_see_the_name_a_clinician_chose_for_them(flows: Flows) -> None:
    clinician_id = f"c-{rid()[:8]}"
    md = flows.user("clinician", clinician_id)
    await flows.session.CreateClinician(
        P.CreateClinicianRequest(
            request_id=rid(),
            clinician=P.Clinician(
                clinician_id=clinician_id,
                display_name="Ada Quill",
                public_name="Dr. Quill",
                email="ada@example.org",
                time_zone="UTC",
                practice_id="practice-1",
            ),
        ),
        metadata=md,
    )
    seen = await flows.session.GetClinician(
        P.GetClinicianRequest(clinician_id=clinician_id), metadata=flows.user("patient", "p-any")
    )
    assert seen.clinician.public_name == "Dr. Quill"
    assert (seen.clinician.display_name, seen.clinician.email) == ("", ""), "PHI stays theirs"
