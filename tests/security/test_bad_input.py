"""Issue 12, finding 6: bad input reaches INTERNAL. Every case here must end
INVALID_ARGUMENT with a field violation on the bad field, against real processes on
SQLite and PostgreSQL: forged page tokens, an out-of-range resume number that used to
break the room for the other participant, non-ASCII digits in dates and times, and
integers out of range."""

from __future__ import annotations

import asyncio
import base64
import json
import stat
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
import pytest
from google.protobuf.duration_pb2 import Duration
from google.protobuf.timestamp_pb2 import Timestamp

from svc_signaling.event_log import MAX_SEQUENCE
from telemesh.billing.v1 import billing_pb2, billing_pb2_grpc
from telemesh.consent.v1 import consent_pb2
from telemesh.paging import KEY_FILE
from telemesh.session.v1 import session_pb2
from telemesh.signaling.v1 import signaling_pb2, signaling_pb2_grpc
from tests.security.support import four_services
from tests.support.billing import completion
from tests.support.errors import bad_fields, refused
from tests.support.flows import Flows, Visit, rid, ts
from tests.support.harness import Stack

INT64_MAX = 2**63 - 1
INT32_MAX = 2**31 - 1
TIME_OFF = session_pb2.AVAILABILITY_EXCEPTION_KIND_TIME_OFF
RECORDING = consent_pb2.CONSENT_CATEGORY_RECORDING


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def stack(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    with four_services(tmp_path_factory.mktemp("home"), request.param) as stack:
        yield stack


@pytest.fixture
async def flows(stack: Stack) -> AsyncIterator[Flows]:
    flows = Flows(stack)
    yield flows
    await flows.close()


def billing_stub(flows: Flows) -> billing_pb2_grpc.BillingServiceAsyncStub:
    return billing_pb2_grpc.BillingServiceStub(flows.channel("billing"))


def signaling_stub(flows: Flows) -> signaling_pb2_grpc.SignalingServiceAsyncStub:
    return signaling_pb2_grpc.SignalingServiceStub(flows.channel("signaling"))


async def invalid_on(call: Awaitable[Any], field: str) -> None:
    error = await refused(call)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, (field, error.code(), error.details())
    assert field in bad_fields(error), (field, bad_fields(error))


# --- page tokens ----------------------------------------------------------------------

# A List call of one RPC: page_token and page_size in, the answer's next_page_token out.
ListCall = Callable[[str, int], Awaitable[str]]


@dataclass
class ListRpc:
    name: str
    call: ListCall


async def list_rpcs(flows: Flows) -> list[ListRpc]:
    """The seven List RPCs, each with data enough for two pages."""
    admin = flows.user("admin", "admin-1")
    billing = flows.user("billing", "biller-1")
    session_service = flows.user("service", "session")
    visit = await flows.ready_visit()
    clinician_md = visit.clinician
    # A second visit: two pages of visits for the admin, whatever else is stored.
    await flows.book()
    for day in ("2030-01-07", "2030-01-08"):
        await flows.session.AddAvailabilityException(
            session_pb2.AddAvailabilityExceptionRequest(
                request_id=rid(),
                exception=session_pb2.AvailabilityException(
                    clinician_id=visit.clinician_id, local_date=day, kind=TIME_OFF
                ),
            ),
            metadata=clinician_md,
        )
    recording = await flows.consent.GrantConsent(
        consent_pb2.GrantConsentRequest(
            request_id=rid(),
            patient_id=visit.patient_id,
            category=RECORDING,
            text_version="2026-01",
            text_sha256="0" * 64,
        ),
        metadata=visit.patient,
    )
    await flows.consent.RevokeConsent(
        consent_pb2.RevokeConsentRequest(
            request_id=rid(), consent_id=recording.consent.consent_id, expected_version=1
        ),
        metadata=visit.patient,
    )
    for _ in range(2):
        await billing_stub(flows).RecordVisitCompletion(
            completion(patient_id=visit.patient_id), metadata=session_service
        )
    now = datetime.now(UTC)

    async def slots(token: str, size: int) -> str:
        reply = await flows.session.ListSlots(
            session_pb2.ListSlotsRequest(
                clinician_id=visit.clinician_id,
                start_time=ts(now + timedelta(hours=1)),
                end_time=ts(now + timedelta(days=2)),
                page_size=size,
                page_token=token,
            ),
            metadata=visit.patient,
        )
        return reply.next_page_token

    async def exceptions(token: str, size: int) -> str:
        reply = await flows.session.ListAvailabilityExceptions(
            session_pb2.ListAvailabilityExceptionsRequest(
                clinician_id=visit.clinician_id,
                start_local_date="2030-01-01",
                end_local_date="2030-12-31",
                page_size=size,
                page_token=token,
            ),
            metadata=clinician_md,
        )
        return reply.next_page_token

    async def visits(token: str, size: int) -> str:
        reply = await flows.session.ListVisits(
            session_pb2.ListVisitsRequest(page_size=size, page_token=token), metadata=admin
        )
        return reply.next_page_token

    async def consents(token: str, size: int) -> str:
        reply = await flows.consent.ListConsents(
            consent_pb2.ListConsentsRequest(
                patient_id=visit.patient_id, page_size=size, page_token=token
            ),
            metadata=visit.patient,
        )
        return reply.next_page_token

    async def versions(token: str, size: int) -> str:
        reply = await flows.consent.ListConsentVersions(
            consent_pb2.ListConsentVersionsRequest(
                consent_id=recording.consent.consent_id, page_size=size, page_token=token
            ),
            metadata=visit.patient,
        )
        return reply.next_page_token

    async def audit(token: str, size: int) -> str:
        reply = await flows.consent.ListAuditEntries(
            consent_pb2.ListAuditEntriesRequest(
                patient_id=visit.patient_id, page_size=size, page_token=token
            ),
            metadata=visit.patient,
        )
        return reply.next_page_token

    async def charges(token: str, size: int) -> str:
        reply = await billing_stub(flows).ListCharges(
            billing_pb2.ListChargesRequest(
                patient_id=visit.patient_id, page_size=size, page_token=token
            ),
            metadata=billing,
        )
        return reply.next_page_token

    return [
        ListRpc("ListSlots", slots),
        ListRpc("ListAvailabilityExceptions", exceptions),
        ListRpc("ListVisits", visits),
        ListRpc("ListConsents", consents),
        ListRpc("ListConsentVersions", versions),
        ListRpc("ListAuditEntries", audit),
        ListRpc("ListCharges", charges),
    ]


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _payload(token: str) -> dict[str, Any]:
    body = token.split(".")[0]
    decoded: dict[str, Any] = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    return decoded


def bad_tokens(genuine: str, foreign: str) -> dict[str, str]:
    """Tokens a client might send instead of `genuine`, each for a reason."""
    payload = _payload(genuine)
    hostile = {key: "not a time' OR 1=1 --" for key in payload["c"]}
    edited = {**payload, "c": hostile}
    mac = genuine.partition(".")[2]
    edited_body = _b64(json.dumps(edited).encode())
    return {
        "garbage": "%%%",
        "non-ascii": "٣٣٣.٣٣٣",
        "too long": "A" * 5000,
        # What the service used to issue: a cursor anyone could write.
        "unsigned": edited_body,
        "edited cursor, old signature": f"{edited_body}.{mac}",
        "made-up signature": f"{edited_body}.{_b64(b'x' * 32)}",
        "truncated signature": genuine[:-4],
        # A genuine token of another List RPC (another query, or another service's key).
        "foreign": foreign,
    }


LIST_RPCS = [
    "ListSlots",
    "ListAvailabilityExceptions",
    "ListVisits",
    "ListConsents",
    "ListConsentVersions",
    "ListAuditEntries",
    "ListCharges",
]


@pytest.mark.parametrize("rpc", LIST_RPCS)
async def test_a_forged_page_token_is_invalid_argument_on_every_list_rpc(
    flows: Flows, rpc: str
) -> None:
    rpcs = {item.name: item for item in await list_rpcs(flows)}
    assert sorted(rpcs) == sorted(LIST_RPCS)
    target = rpcs[rpc]
    genuine = await target.call("", 1)
    assert genuine, f"{rpc} gave no next page to forge"
    assert await target.call(genuine, 1) is not None  # the genuine token pages on
    others = LIST_RPCS[(LIST_RPCS.index(rpc) + 1) % len(LIST_RPCS)]
    foreign = await rpcs[others].call("", 1)
    for why, token in bad_tokens(genuine, foreign).items():
        error = await refused(target.call(token, 1))
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, (rpc, why, error.code())
        assert bad_fields(error) == {"page_token"}, (rpc, why, bad_fields(error))


def test_each_service_keeps_its_page_token_secret_owner_only(stack: Stack) -> None:
    secrets = {}
    for name in ("session", "consent", "billing"):
        path = stack.home / name / KEY_FILE
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, name
        secrets[name] = path.read_text()
    assert len(set(secrets.values())) == 3, "each service must have a secret of its own"


# --- JoinRoom's resume number -----------------------------------------------------------


async def _first(stream: Any) -> signaling_pb2.JoinRoomResponse:
    async with asyncio.timeout(10):
        async for event in stream:
            return event  # type: ignore[no-any-return]
    raise AssertionError("the stream ended without an event")


async def _next_of(stream: Any, kind: str) -> signaling_pb2.JoinRoomResponse:
    async with asyncio.timeout(10):
        async for event in stream:
            if event.WhichOneof("event") == kind:
                return event  # type: ignore[no-any-return]
    raise AssertionError(f"the stream ended without {kind}")


async def _join(flows: Flows, visit: Visit, role: str, resume_after: int) -> Any:
    md = visit.patient if role == "patient" else visit.clinician
    return signaling_stub(flows).JoinRoom(
        signaling_pb2.JoinRoomRequest(
            join_token=await flows.join_token(visit, role), resume_after_sequence=resume_after
        ),
        metadata=md,
    )


@pytest.mark.parametrize("resume_after", [INT64_MAX, MAX_SEQUENCE + 1, -1, -(2**63)])
async def test_an_out_of_range_resume_number_is_refused_and_the_other_participant_still_joins(
    flows: Flows, resume_after: int
) -> None:
    visit = await flows.ready_visit()
    await invalid_on(
        _first(await _join(flows, visit, "patient", resume_after)), "resume_after_sequence"
    )
    clinician = await _join(flows, visit, "clinician", 0)
    patient = None
    try:
        # The clinician is in the room before the patient asks to join (the order the
        # assertions below rest on; both joining at once may go either way).
        assert (await _first(clinician)).WhichOneof("event") == "joined"
        patient = await _join(flows, visit, "patient", 0)
        assert (await _first(patient)).joined.peer_present
        await _next_of(clinician, "peer_joined")
    finally:
        clinician.cancel()
        if patient is not None:
            patient.cancel()


async def test_the_highest_resume_number_is_taken_and_the_room_goes_on(flows: Flows) -> None:
    visit = await flows.ready_visit()
    patient = await _join(flows, visit, "patient", MAX_SEQUENCE)
    clinician = None
    try:
        joined = await _first(patient)  # in the room before the clinician joins
        assert joined.joined.resume_gap
        assert joined.sequence == MAX_SEQUENCE
        clinician = await _join(flows, visit, "clinician", 0)
        assert (await _first(clinician)).joined.peer_present
        peer = await _next_of(patient, "peer_joined")
        assert peer.sequence == MAX_SEQUENCE + 1
    finally:
        patient.cancel()
        if clinician is not None:
            clinician.cancel()


# --- non-ASCII digits ------------------------------------------------------------------

ARABIC_INDIC = str.maketrans("0123456789", "٠١٢٣٤٥٦٧٨٩")
FULLWIDTH = str.maketrans("0123456789", "０１２３４５６７８９")


def foreign_digits(text: str, table: dict[int, int] = ARABIC_INDIC) -> str:
    return text.translate(table)


async def test_dates_and_times_with_non_ascii_digits_are_refused(flows: Flows) -> None:
    clinician_id, clinician = await flows.clinician()
    billing = billing_stub(flows)
    session_service = flows.user("service", "session")
    for table in (ARABIC_INDIC, FULLWIDTH):
        await invalid_on(
            flows.session.CreatePatient(
                session_pb2.CreatePatientRequest(
                    request_id=rid(),
                    patient=session_pb2.Patient(
                        patient_id=f"p-{rid()[:8]}",
                        display_name="Pat",
                        birth_date=foreign_digits("1980-01-02", table),
                    ),
                ),
                metadata=flows.user("admin", "admin-1"),
            ),
            "patient.birth_date",
        )
        await invalid_on(
            flows.session.SetWeeklyAvailability(
                session_pb2.SetWeeklyAvailabilityRequest(
                    request_id=rid(),
                    clinician_id=clinician_id,
                    slot_minutes=15,
                    hours=[
                        session_pb2.WeeklyHours(
                            day=session_pb2.DayOfWeek.ValueType(1),
                            start_local_time=foreign_digits("09:00", table),
                            end_local_time="17:00",
                        )
                    ],
                ),
                metadata=clinician,
            ),
            "hours[0].start_local_time",
        )
        for field, exception in (
            (
                "exception.local_date",
                session_pb2.AvailabilityException(
                    local_date=foreign_digits("2030-01-07", table), kind=TIME_OFF
                ),
            ),
            (
                "exception.end_local_time",
                session_pb2.AvailabilityException(
                    local_date="2030-01-07",
                    kind=TIME_OFF,
                    start_local_time="09:00",
                    end_local_time=foreign_digits("12:00", table),
                ),
            ),
        ):
            exception.clinician_id = clinician_id
            await invalid_on(
                flows.session.AddAvailabilityException(
                    session_pb2.AddAvailabilityExceptionRequest(
                        request_id=rid(), exception=exception
                    ),
                    metadata=clinician,
                ),
                field,
            )
        await invalid_on(
            flows.session.ListAvailabilityExceptions(
                session_pb2.ListAvailabilityExceptionsRequest(
                    clinician_id=clinician_id,
                    start_local_date=foreign_digits("2030-01-01", table),
                    end_local_date="2030-12-31",
                ),
                metadata=clinician,
            ),
            "start_local_date",
        )
        today = datetime.now(UTC).date().isoformat()
        await invalid_on(
            billing.RecordVisitCompletion(
                completion(service_date=foreign_digits(today, table)), metadata=session_service
            ),
            "service_date",
        )
        await invalid_on(
            billing.GetPatientStatement(
                billing_pb2.GetPatientStatementRequest(
                    patient_id="p-1",
                    start_date="2026-01-01",
                    end_date=foreign_digits("2026-01-31", table),
                ),
                metadata=flows.user("billing", "biller-1"),
            ),
            "end_date",
        )


# --- integer ranges --------------------------------------------------------------------


async def test_integers_out_of_range_are_invalid_argument(flows: Flows) -> None:
    visit = await flows.ready_visit()
    billing = billing_stub(flows)
    signaling = signaling_stub(flows)
    admin = flows.user("admin", "admin-1")
    session_service = flows.user("service", "session")
    now = datetime.now(UTC)
    for size in (-1, INT32_MAX, -(2**31)):
        await invalid_on(
            flows.session.ListVisits(session_pb2.ListVisitsRequest(page_size=size), metadata=admin),
            "page_size",
        )
        await invalid_on(
            flows.consent.ListConsents(
                consent_pb2.ListConsentsRequest(patient_id=visit.patient_id, page_size=size),
                metadata=visit.patient,
            ),
            "page_size",
        )
        await invalid_on(
            billing.ListCharges(
                billing_pb2.ListChargesRequest(page_size=size),
                metadata=flows.user("billing", "biller-1"),
            ),
            "page_size",
        )
    for minutes in (-5, 0, INT32_MAX, -(2**31)):
        await invalid_on(
            flows.session.SetWeeklyAvailability(
                session_pb2.SetWeeklyAvailabilityRequest(
                    request_id=rid(), clinician_id=visit.clinician_id, slot_minutes=minutes
                ),
                metadata=visit.clinician,
            ),
            "slot_minutes",
        )
    for seconds in (INT64_MAX, -(2**63)):
        huge = Timestamp(seconds=seconds)
        await invalid_on(
            flows.session.ListSlots(
                session_pb2.ListSlotsRequest(
                    clinician_id=visit.clinician_id, start_time=huge, end_time=ts(now)
                ),
                metadata=visit.patient,
            ),
            "start_time",
        )
        await invalid_on(
            billing.RecordVisitCompletion(
                completion(connected_seconds=seconds), metadata=session_service
            ),
            "connected_seconds",
        )
        # The heartbeat used to overflow timedelta: INTERNAL.
        watch = flows.consent.WatchConsentChanges(
            consent_pb2.WatchConsentChangesRequest(heartbeat_interval=Duration(seconds=seconds)),
            metadata=admin,
        )
        await invalid_on(_first(watch), "heartbeat_interval")
    for version in (-1, -(2**63)):
        await invalid_on(
            flows.consent.RevokeConsent(
                consent_pb2.RevokeConsentRequest(
                    request_id=rid(), consent_id=rid(), expected_version=version
                ),
                metadata=visit.patient,
            ),
            "expected_version",
        )
    watch = flows.consent.WatchConsentChanges(
        consent_pb2.WatchConsentChangesRequest(after_sequence=-1), metadata=admin
    )
    await invalid_on(_first(watch), "after_sequence")
    # A room with both participants: the uplink numbers.
    patient = await _join(flows, visit, "patient", 0)
    try:
        room_id = (await _first(patient)).joined.room_id
        await invalid_on(
            signaling.SendIceCandidates(
                signaling_pb2.SendIceCandidatesRequest(
                    request_id=rid(),
                    room_id=room_id,
                    candidates=[signaling_pb2.IceCandidate(sdp_mline_index=INT32_MAX)],
                ),
                metadata=visit.patient,
            ),
            "candidates[0].sdp_mline_index",
        )
        for field, quality in (
            ("quality.frames_received", signaling_pb2.CallQuality(frames_received=-(2**63))),
            (
                "quality.round_trip_time_ms",
                signaling_pb2.CallQuality(round_trip_time_ms=float("inf")),
            ),
            ("quality.jitter_ms", signaling_pb2.CallQuality(jitter_ms=float("nan"))),
        ):
            await invalid_on(
                signaling.ReportCallQuality(
                    signaling_pb2.ReportCallQualityRequest(
                        request_id=rid(), room_id=room_id, quality=quality
                    ),
                    metadata=visit.patient,
                ),
                field,
            )
    finally:
        patient.cancel()
