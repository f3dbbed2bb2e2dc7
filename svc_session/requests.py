"""Checking requests: every bad field collected, then one INVALID_ARGUMENT; what comes
out is the request in plain values, for the domain modules (which never see a proto)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from google.protobuf.timestamp_pb2 import Timestamp

from svc_session import schedule
from svc_session.models import BLOCK_MINUTES
from telemesh.access_log import MAX_BATCH
from telemesh.auth import Principal
from telemesh.paging import page_size
from telemesh.session.v1 import session_pb2
from telemesh.validation import Violations

P = session_pb2
S = session_pb2.VisitState

_EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]{1,190}\.[^@\s]{2,}$")
_PHONE = re.compile(r"^\+?[0-9 ().-]{5,20}$")
MAX_SLOT_RANGE = timedelta(days=62)
EXTRA_HOURS = P.AvailabilityExceptionKind.AVAILABILITY_EXCEPTION_KIND_EXTRA_HOURS
TIME_OFF = P.AvailabilityExceptionKind.AVAILABILITY_EXCEPTION_KIND_TIME_OFF
LOCATIONS = frozenset(
    {P.PatientLocation.PATIENT_LOCATION_HOME, P.PatientLocation.PATIENT_LOCATION_OTHER}
)
CONNECTION_KINDS = frozenset(
    {P.CONNECTION_EVENT_KIND_CONNECTED, P.CONNECTION_EVENT_KIND_DISCONNECTED}
)
# Who may appear in the access log, and how an access ended.
ACCESS_ROLES = frozenset({"patient", "clinician", "billing", "admin", "partner"})
ACCESS_OUTCOMES = frozenset({P.ACCESS_OUTCOME_ALLOWED, P.ACCESS_OUTCOME_REFUSED})


# --- people ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Person:
    """A new profile: its id and its PHI (sealed column by column when stored)."""

    person_id: str
    display_name: str
    birth_date: str
    email: str
    phone: str


@dataclass(frozen=True)
class NewClinician:
    person: Person
    time_zone: str
    practice_id: str
    public_name: str


def _person(
    check: Violations, prefix: str, person_id: str, given: P.Patient | P.Clinician
) -> Person:
    check.identifier(f"{prefix}.{prefix}_id", person_id)
    check.required(f"{prefix}.display_name", given.display_name)
    check.max_length(f"{prefix}.display_name", given.display_name, 200)
    if given.birth_date:
        born = check.iso_date(f"{prefix}.birth_date", given.birth_date)
        if born is not None:
            check.check(
                date(1900, 1, 1) <= born <= datetime.now(UTC).date(),
                f"{prefix}.birth_date",
                "must be a past date after 1900",
            )
    if given.email:
        check.check(bool(_EMAIL.match(given.email)), f"{prefix}.email", "is not an email address")
    if given.phone:
        check.check(bool(_PHONE.match(given.phone)), f"{prefix}.phone", "is not a phone number")
    return Person(person_id, given.display_name, given.birth_date, given.email, given.phone)


def new_patient(request: P.CreatePatientRequest, principal: Principal) -> Person:
    """The profile; its id is the caller's own unless given (an admin names it)."""
    check = Violations()
    person = _person(
        check, "patient", request.patient.patient_id or principal.subject, request.patient
    )
    check.raise_if_any()
    return person


def new_clinician(request: P.CreateClinicianRequest, principal: Principal) -> NewClinician:
    given = request.clinician
    check = Violations()
    person = _person(check, "clinician", given.clinician_id or principal.subject, given)
    if check.required("clinician.time_zone", given.time_zone):
        check.check(
            schedule.is_time_zone(given.time_zone),
            "clinician.time_zone",
            "is not an IANA time zone",
        )
    check.identifier("clinician.practice_id", given.practice_id)
    check.max_length("clinician.public_name", given.public_name, 200)
    check.raise_if_any()
    return NewClinician(person, given.time_zone, given.practice_id, given.public_name.strip())


def identifier(field: str, value: str) -> str:
    """A request whose only input is one id (a patient, a clinician)."""
    check = Violations()
    check.identifier(field, value)
    check.raise_if_any()
    return value


def required(field: str, value: str) -> str:
    """A request whose only input is one id the service made (a visit, an exception)."""
    check = Violations()
    check.required(field, value)
    check.raise_if_any()
    return value


# --- availability -----------------------------------------------------------------------


@dataclass(frozen=True)
class WeeklyHours:
    clinician_id: str
    time_zone: str  # empty: the clinician's own
    slot_minutes: int
    periods: tuple[schedule.WeeklyPeriod, ...]


@dataclass(frozen=True)
class NewException:
    clinician_id: str
    local_date: str
    kind: int
    start_local_time: str
    end_local_time: str


@dataclass(frozen=True)
class ExceptionQuery:
    clinician_id: str
    first_date: str
    last_date: str
    page_size: int
    page_token: str


@dataclass(frozen=True)
class SlotQuery:
    clinician_id: str
    start: datetime
    end: datetime
    page_size: int
    page_token: str


def _period(check: Violations, prefix: str, start: str, end: str) -> tuple[int, int] | None:
    try:
        begin = schedule.parse_local_time(start)
    except ValueError as error:
        check.add(f"{prefix}.start_local_time", str(error))
        return None
    try:
        finish = schedule.parse_local_time(end, allow_end_of_day=True)
    except ValueError as error:
        check.add(f"{prefix}.end_local_time", str(error))
        return None
    if finish <= begin:
        check.add(f"{prefix}.end_local_time", "must be after the start")
        return None
    return begin, finish


def weekly_hours(request: P.SetWeeklyAvailabilityRequest) -> WeeklyHours:
    check = Violations()
    check.identifier("clinician_id", request.clinician_id)
    if request.time_zone:
        check.check(
            schedule.is_time_zone(request.time_zone), "time_zone", "is not an IANA time zone"
        )
    minutes = request.slot_minutes
    check.check(
        5 <= minutes <= 240 and minutes % BLOCK_MINUTES == 0,
        "slot_minutes",
        "must be 5 to 240, a multiple of 5",
    )
    check.check(len(request.hours) <= 70, "hours", "at most 70 periods")
    periods: list[schedule.WeeklyPeriod] = []
    for index, hours in enumerate(request.hours):
        prefix = f"hours[{index}]"
        if not 1 <= hours.day <= 7:
            check.add(f"{prefix}.day", "must be a day of the week")
            continue
        span = _period(check, prefix, hours.start_local_time, hours.end_local_time)
        if span is None:
            continue
        for other in periods:
            if other.day == hours.day and span[0] < other.end and other.start < span[1]:
                check.add(prefix, "overlaps another period on the same day")
        periods.append(schedule.WeeklyPeriod(hours.day, *span))
    check.raise_if_any()
    return WeeklyHours(request.clinician_id, request.time_zone, minutes, tuple(periods))


def new_exception(request: P.AddAvailabilityExceptionRequest) -> NewException:
    wanted = request.exception
    check = Violations()
    check.identifier("exception.clinician_id", wanted.clinician_id)
    check.iso_date("exception.local_date", wanted.local_date)
    if wanted.kind not in (EXTRA_HOURS, TIME_OFF):
        check.add("exception.kind", "must be TIME_OFF or EXTRA_HOURS")
    whole_day = not wanted.start_local_time and not wanted.end_local_time
    if not (whole_day and wanted.kind == TIME_OFF):
        _period(check, "exception", wanted.start_local_time, wanted.end_local_time)
    check.raise_if_any()
    return NewException(
        wanted.clinician_id,
        wanted.local_date,
        wanted.kind,
        wanted.start_local_time,
        wanted.end_local_time,
    )


def exception_query(request: P.ListAvailabilityExceptionsRequest) -> ExceptionQuery:
    check = Violations()
    check.identifier("clinician_id", request.clinician_id)
    first = check.iso_date("start_local_date", request.start_local_date)
    last = check.iso_date("end_local_date", request.end_local_date)
    if first is not None and last is not None:
        check.check(first <= last, "end_local_date", "must not be before the start")
    size = page_size(request.page_size)
    check.raise_if_any()
    return ExceptionQuery(
        request.clinician_id,
        request.start_local_date,
        request.end_local_date,
        size,
        request.page_token,
    )


def slot_query(request: P.ListSlotsRequest) -> SlotQuery:
    check = Violations()
    check.identifier("clinician_id", request.clinician_id)
    start = check.timestamp("start_time", request.start_time, request.HasField("start_time"))
    end = check.timestamp("end_time", request.end_time, request.HasField("end_time"))
    if start is not None and end is not None:
        if end <= start:
            check.add("end_time", "must be after start_time")
        elif end - start > MAX_SLOT_RANGE:
            check.add("end_time", "must be at most 62 days after start_time")
        if end <= datetime.now(UTC) - timedelta(days=1):
            check.add("end_time", "is in the past")
    size = page_size(request.page_size)
    check.raise_if_any()
    assert start is not None
    assert end is not None
    return SlotQuery(request.clinician_id, start, end, size, request.page_token)


# --- booking ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Booking:
    clinician_id: str
    patient_id: str
    start: datetime


@dataclass(frozen=True)
class Cancellation:
    visit_id: str
    reason: int


@dataclass(frozen=True)
class Rescheduling:
    visit_id: str
    start: datetime


def _future_start(
    check: Violations, field: str, value: Timestamp, present: bool
) -> datetime | None:
    """A slot's start: on the block grain and in the future."""
    start = check.timestamp(field, value, present)
    if start is None:
        return None
    if not schedule.is_on_grain(start):
        check.add(field, f"must be on a {BLOCK_MINUTES}-minute boundary")
        return None
    if start <= datetime.now(UTC):
        check.add(field, "must be in the future")
        return None
    return start


def booking(request: P.BookVisitRequest) -> Booking:
    check = Violations()
    check.uuid("request_id", request.request_id)
    check.identifier("clinician_id", request.clinician_id)
    check.identifier("patient_id", request.patient_id)
    start = _future_start(check, "start_time", request.start_time, request.HasField("start_time"))
    check.raise_if_any()
    assert start is not None
    return Booking(request.clinician_id, request.patient_id, start)


def cancellation(request: P.CancelVisitRequest) -> Cancellation:
    check = Violations()
    check.required("visit_id", request.visit_id)
    check.check(
        request.reason != P.CancelReason.CANCEL_REASON_UNSPECIFIED
        and request.reason in P.CancelReason.values(),
        "reason",
        "a cancellation needs a reason",
    )
    check.raise_if_any()
    return Cancellation(request.visit_id, request.reason)


def rescheduling(request: P.RescheduleVisitRequest) -> Rescheduling:
    check = Violations()
    check.required("visit_id", request.visit_id)
    start = _future_start(
        check, "new_start_time", request.new_start_time, request.HasField("new_start_time")
    )
    check.raise_if_any()
    assert start is not None
    return Rescheduling(request.visit_id, start)


# --- the visit's life -------------------------------------------------------------------------


@dataclass(frozen=True)
class VisitQuery:
    patient_id: str
    clinician_id: str
    states: tuple[int, ...]
    page_size: int
    page_token: str


@dataclass(frozen=True)
class CheckIn:
    visit_id: str
    patient_location: int


@dataclass(frozen=True)
class ConnectionEvent:
    visit_id: str
    connected: bool  # False: disconnected
    at: datetime


@dataclass(frozen=True)
class Completion:
    visit_id: str
    diagnosis_codes: tuple[str, ...]
    audio_only: bool


def visit_query(request: P.ListVisitsRequest) -> VisitQuery:
    check = Violations()
    check.identifier("patient_id", request.patient_id, required=False)
    check.identifier("clinician_id", request.clinician_id, required=False)
    check.check(
        all(s in S.values() and s != S.VISIT_STATE_UNSPECIFIED for s in request.states),
        "states",
        "unknown visit state",
    )
    size = page_size(request.page_size)
    check.raise_if_any()
    return VisitQuery(
        request.patient_id,
        request.clinician_id,
        tuple(sorted(set(request.states))),
        size,
        request.page_token,
    )


def check_in(request: P.CheckInRequest) -> CheckIn:
    check = Violations()
    check.required("visit_id", request.visit_id)
    check.check(
        request.patient_location in LOCATIONS,
        "patient_location",
        "say where you are: HOME or OTHER",
    )
    check.raise_if_any()
    return CheckIn(request.visit_id, request.patient_location)


def connection_event(request: P.RecordConnectionEventRequest) -> ConnectionEvent:
    check = Violations()
    check.required("visit_id", request.visit_id)
    check.check(request.kind in CONNECTION_KINDS, "kind", "must be CONNECTED or DISCONNECTED")
    at = check.timestamp("event_time", request.event_time, request.HasField("event_time"))
    if at is not None and at > datetime.now(UTC) + timedelta(seconds=5):
        check.add("event_time", "is in the future")
    check.raise_if_any()
    assert at is not None
    return ConnectionEvent(request.visit_id, request.kind == P.CONNECTION_EVENT_KIND_CONNECTED, at)


def completion(request: P.CompleteVisitRequest) -> Completion:
    check = Violations()
    check.required("visit_id", request.visit_id)
    codes = [code.strip().upper() for code in request.diagnosis_codes]
    check.check(1 <= len(codes) <= 12, "diagnosis_codes", "give 1 to 12 ICD-10-CM codes")
    for index, code in enumerate(codes):
        check.icd10_cm(f"diagnosis_codes[{index}]", code)
    check.check(len(set(codes)) == len(codes), "diagnosis_codes", "has a code twice")
    check.raise_if_any()
    return Completion(request.visit_id, tuple(codes), request.audio_only)


# --- care relationships and the access log ----------------------------------------------------


def care_question(request: P.CheckCareRelationshipRequest) -> tuple[str, str]:
    """The patient and (optionally) the clinician asked about."""
    check = Violations()
    check.identifier("patient_id", request.patient_id)
    check.identifier("clinician_id", request.clinician_id, required=False)
    check.raise_if_any()
    return request.patient_id, request.clinician_id


def access_report(request: P.RecordPatientAccessRequest, reporting_service: str) -> None:
    """Every access well formed, and reported by the service that served it."""
    check = Violations()
    check.uuid("request_id", request.request_id)
    check.check(
        1 <= len(request.accesses) <= MAX_BATCH, "accesses", f"give 1 to {MAX_BATCH} accesses"
    )
    for index, access in enumerate(request.accesses[:MAX_BATCH]):
        field = f"accesses[{index}]"
        check.uuid(f"{field}.access_id", access.access_id)
        check.timestamp(f"{field}.access_time", access.access_time, access.HasField("access_time"))
        check.identifier(f"{field}.patient_id", access.patient_id)
        check.identifier(f"{field}.actor_id", access.actor_id)
        check.check(access.actor_role in ACCESS_ROLES, f"{field}.actor_role", "is not a user role")
        check.check(
            access.service == reporting_service,
            f"{field}.service",
            "must name the reporting service",
        )
        check.check(
            access.method.startswith("/telemesh.") and len(access.method) <= 200,
            f"{field}.method",
            "must be a Telemesh RPC path",
        )
        check.check(
            access.outcome in ACCESS_OUTCOMES, f"{field}.outcome", "must be ALLOWED or REFUSED"
        )
        check.required(f"{field}.basis", access.basis)
        check.max_length(f"{field}.basis", access.basis, 60)
    check.raise_if_any()


@dataclass(frozen=True)
class AccessLogQuery:
    patient_id: str
    page_size: int
    page_token: str


def access_log_query(request: P.ListPatientAccessRequest) -> AccessLogQuery:
    check = Violations()
    check.identifier("patient_id", request.patient_id)
    size = page_size(request.page_size)
    check.raise_if_any()
    return AccessLogQuery(request.patient_id, size, request.page_token)
