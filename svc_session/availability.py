"""Clinicians' weekly hours, their exceptions, and the free slots they make."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable
from datetime import UTC, date, datetime, timedelta
from typing import Protocol

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from svc_session import schedule
from svc_session.models import (
    BLOCK_MINUTES,
    AvailabilityExceptionRow,
    AvailabilityRow,
    SlotClaimRow,
)
from svc_session.profiles import load_clinician
from telemesh.auth import current_principal, require_self_or
from telemesh.errors import FailedPrecondition, NotFound
from telemesh.paging import decode_token, encode_token, page_of, page_size
from telemesh.session.v1 import session_pb2
from telemesh.timestamps import timestamp
from telemesh.validation import Violations

MAX_SLOT_RANGE = timedelta(days=62)
EXTRA = session_pb2.AvailabilityExceptionKind.AVAILABILITY_EXCEPTION_KIND_EXTRA_HOURS
TIME_OFF = session_pb2.AvailabilityExceptionKind.AVAILABILITY_EXCEPTION_KIND_TIME_OFF


def _weekly(row: AvailabilityRow) -> list[schedule.WeeklyPeriod]:
    return _weekly_hours(row.hours_json)


def _weekly_hours(hours_json: str) -> list[schedule.WeeklyPeriod]:
    return [schedule.WeeklyPeriod(day, start, end) for day, start, end in json.loads(hours_json)]


class ExceptionFields(Protocol):
    """An exception's columns: its row, or a row of a query that selected them."""

    local_date: str
    kind: int
    start_local_time: str
    end_local_time: str


def _exception(row: ExceptionFields) -> schedule.DateException:
    whole_day = not row.start_local_time
    return schedule.DateException(
        local_date=date.fromisoformat(row.local_date),
        extra_hours=row.kind == EXTRA,
        start=0 if whole_day else schedule.parse_local_time(row.start_local_time),
        end=schedule.MINUTES_PER_DAY
        if whole_day
        else schedule.parse_local_time(row.end_local_time, allow_end_of_day=True),
    )


def _availability_proto(row: AvailabilityRow) -> session_pb2.Availability:
    return session_pb2.Availability(
        clinician_id=row.clinician_id,
        time_zone=row.time_zone,
        slot_minutes=row.slot_minutes,
        update_time=timestamp(row.update_time),
        hours=[
            session_pb2.WeeklyHours(
                day=period.day,  # type: ignore[arg-type]
                start_local_time=schedule.format_local_time(period.start),
                end_local_time=schedule.format_local_time(period.end),
            )
            for period in _weekly(row)
        ],
    )


def _exception_proto(row: AvailabilityExceptionRow) -> session_pb2.AvailabilityException:
    return session_pb2.AvailabilityException(
        exception_id=row.exception_id,
        clinician_id=row.clinician_id,
        local_date=row.local_date,
        kind=row.kind,  # type: ignore[arg-type]
        start_local_time=row.start_local_time,
        end_local_time=row.end_local_time,
    )


def _check_period(check: Violations, prefix: str, start: str, end: str) -> tuple[int, int] | None:
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


async def set_weekly(
    session: AsyncSession, request: session_pb2.SetWeeklyAvailabilityRequest
) -> session_pb2.SetWeeklyAvailabilityResponse:
    check = Violations()
    check.identifier("clinician_id", request.clinician_id)
    check.raise_if_any()
    require_self_or("clinician", request.clinician_id, "admin")
    clinician = await load_clinician(session, request.clinician_id)
    zone = request.time_zone or clinician.time_zone
    check.check(schedule.is_time_zone(zone), "time_zone", "is not an IANA time zone")
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
        span = _check_period(check, prefix, hours.start_local_time, hours.end_local_time)
        if span is None:
            continue
        for other in periods:
            if other.day == hours.day and span[0] < other.end and other.start < span[1]:
                check.add(prefix, "overlaps another period on the same day")
        periods.append(schedule.WeeklyPeriod(hours.day, *span))
    check.raise_if_any()
    row = await session.get(AvailabilityRow, request.clinician_id) or AvailabilityRow(
        clinician_id=request.clinician_id,
        time_zone=zone,
        slot_minutes=minutes,
        hours_json="[]",
        update_time=datetime.now(UTC),
    )
    row.time_zone = zone
    row.slot_minutes = minutes
    row.hours_json = json.dumps(sorted([p.day, p.start, p.end] for p in periods))
    row.update_time = datetime.now(UTC)
    session.add(row)
    await session.flush()
    return session_pb2.SetWeeklyAvailabilityResponse(availability=_availability_proto(row))


async def add_exception(
    session: AsyncSession, request: session_pb2.AddAvailabilityExceptionRequest
) -> session_pb2.AddAvailabilityExceptionResponse:
    wanted = request.exception
    check = Violations()
    check.identifier("exception.clinician_id", wanted.clinician_id)
    check.iso_date("exception.local_date", wanted.local_date)
    if wanted.kind not in (EXTRA, TIME_OFF):
        check.add("exception.kind", "must be TIME_OFF or EXTRA_HOURS")
    whole_day = not wanted.start_local_time and not wanted.end_local_time
    if not (whole_day and wanted.kind == TIME_OFF):
        _check_period(check, "exception", wanted.start_local_time, wanted.end_local_time)
    check.raise_if_any()
    require_self_or("clinician", wanted.clinician_id, "admin")
    await load_clinician(session, wanted.clinician_id)
    row = AvailabilityExceptionRow(
        exception_id=str(uuid.uuid4()),
        clinician_id=wanted.clinician_id,
        local_date=wanted.local_date,
        kind=wanted.kind,
        start_local_time=wanted.start_local_time,
        end_local_time=wanted.end_local_time,
    )
    session.add(row)
    await session.flush()
    return session_pb2.AddAvailabilityExceptionResponse(exception=_exception_proto(row))


async def delete_exception(
    session: AsyncSession, request: session_pb2.DeleteAvailabilityExceptionRequest
) -> session_pb2.DeleteAvailabilityExceptionResponse:
    check = Violations()
    check.required("exception_id", request.exception_id)
    check.raise_if_any()
    row = await session.get(AvailabilityExceptionRow, request.exception_id)
    if row is None:
        raise NotFound("availability_exception", request.exception_id)
    require_self_or("clinician", row.clinician_id, "admin")
    await session.delete(row)
    return session_pb2.DeleteAvailabilityExceptionResponse()


async def list_exceptions(
    session: AsyncSession, request: session_pb2.ListAvailabilityExceptionsRequest
) -> session_pb2.ListAvailabilityExceptionsResponse:
    check = Violations()
    check.identifier("clinician_id", request.clinician_id)
    first = check.iso_date("start_local_date", request.start_local_date)
    last = check.iso_date("end_local_date", request.end_local_date)
    if first is not None and last is not None:
        check.check(first <= last, "end_local_date", "must not be before the start")
    size = page_size(request.page_size)
    check.raise_if_any()
    require_self_or("clinician", request.clinician_id, "admin")
    query_key = {
        "c": request.clinician_id,
        "s": request.start_local_date,
        "e": request.end_local_date,
    }
    cursor = decode_token(request.page_token, query_key, {"d": str, "i": str})
    query = (
        select(AvailabilityExceptionRow)
        .where(AvailabilityExceptionRow.clinician_id == request.clinician_id)
        .where(col(AvailabilityExceptionRow.local_date) >= request.start_local_date)
        .where(col(AvailabilityExceptionRow.local_date) <= request.end_local_date)
        .order_by(
            col(AvailabilityExceptionRow.local_date), col(AvailabilityExceptionRow.exception_id)
        )
        .limit(size + 1)
    )
    if cursor is not None:
        query = query.where(
            (col(AvailabilityExceptionRow.local_date) > cursor["d"])
            | (
                (col(AvailabilityExceptionRow.local_date) == cursor["d"])
                & (col(AvailabilityExceptionRow.exception_id) > cursor["i"])
            )
        )
    rows, token = page_of(
        (await session.exec(query)).all(),
        size,
        lambda row: {"d": row.local_date, "i": row.exception_id},
        query_key,
    )
    return session_pb2.ListAvailabilityExceptionsResponse(
        exceptions=[_exception_proto(row) for row in rows], next_page_token=token
    )


def no_availability() -> FailedPrecondition:
    return FailedPrecondition("NO_AVAILABILITY", "the clinician has not published weekly hours")


async def schedule_of(
    session: AsyncSession, clinician_id: str, dates: tuple[str, str] | None = None
) -> tuple[AvailabilityRow, list[schedule.DateException]]:
    """The clinician's weekly hours and exceptions (those on local dates in `dates`,
    first and last included, when given)."""
    availability = await session.get(AvailabilityRow, clinician_id)
    if availability is None:
        raise no_availability()
    query = select(AvailabilityExceptionRow).where(
        AvailabilityExceptionRow.clinician_id == clinician_id
    )
    if dates is not None:
        query = query.where(col(AvailabilityExceptionRow.local_date).between(*dates))
    exceptions = (await session.exec(query)).all()
    return availability, [_exception(row) for row in exceptions]


def exception_dates(start: datetime) -> tuple[str, str]:
    """The local dates (ISO, first and last) whose exceptions can decide the slot that
    starts at `start`, whatever the clinician's time zone: `schedule.slot_ending` looks
    at the start's local date and the day before, and a local date is never more than
    a day from the UTC one (offsets are -12 to +14 hours)."""
    day = start.astimezone(UTC).date()
    return (day - timedelta(days=2)).isoformat(), (day + timedelta(days=1)).isoformat()


def ending_of(
    time_zone: str,
    slot_minutes: int,
    hours_json: str,
    exceptions: Iterable[ExceptionFields],
    start: datetime,
) -> datetime | None:
    """The end of the slot starting at `start` in a schedule read by the caller (its
    exceptions on `exception_dates(start)` at least), if one does."""
    return schedule.slot_ending(
        time_zone,
        slot_minutes,
        _weekly_hours(hours_json),
        [_exception(row) for row in exceptions],
        start,
    )


async def slot_ending(session: AsyncSession, clinician_id: str, start: datetime) -> datetime | None:
    """The end of the clinician's slot starting at `start` (booked or not), if any."""
    availability, exceptions = await schedule_of(session, clinician_id, exception_dates(start))
    return schedule.slot_ending(
        availability.time_zone, availability.slot_minutes, _weekly(availability), exceptions, start
    )


async def offered_slots(
    session: AsyncSession, clinician_id: str, start: datetime, end: datetime
) -> list[tuple[datetime, datetime]]:
    """The clinician's slots starting in [start, end), booked or not."""
    availability, exceptions = await schedule_of(session, clinician_id)
    return schedule.slots(
        availability.time_zone,
        availability.slot_minutes,
        _weekly(availability),
        exceptions,
        start,
        end,
    )


async def list_slots(
    session: AsyncSession, request: session_pb2.ListSlotsRequest
) -> session_pb2.ListSlotsResponse:
    current_principal()  # any signed-in user may look for slots
    now = datetime.now(UTC)
    check = Violations()
    check.identifier("clinician_id", request.clinician_id)
    start = check.timestamp("start_time", request.start_time, request.HasField("start_time"))
    end = check.timestamp("end_time", request.end_time, request.HasField("end_time"))
    if start is not None and end is not None:
        if end <= start:
            check.add("end_time", "must be after start_time")
        elif end - start > MAX_SLOT_RANGE:
            check.add("end_time", "must be at most 62 days after start_time")
        if end <= now - timedelta(days=1):
            check.add("end_time", "is in the past")
    size = page_size(request.page_size)
    check.raise_if_any()
    assert start is not None
    assert end is not None
    query_key = {"c": request.clinician_id, "s": start.isoformat(), "e": end.isoformat()}
    cursor = decode_token(request.page_token, query_key, {"after": str})
    from_time = max(start, now)
    if cursor is not None:
        from_time = max(
            from_time, datetime.fromisoformat(cursor["after"]) + timedelta(microseconds=1)
        )
    await load_clinician(session, request.clinician_id)
    offered = await offered_slots(session, request.clinician_id, from_time, end)
    claimed = set(
        (
            await session.exec(
                select(SlotClaimRow.block)
                .where(SlotClaimRow.clinician_id == request.clinician_id)
                .where(col(SlotClaimRow.block) >= schedule.block_of(from_time) - 60)
                .where(col(SlotClaimRow.block) <= schedule.block_of(end) + 60)
            )
        ).all()
    )
    free = [(s, e) for s, e in offered if not any(b in claimed for b in schedule.blocks(s, e))]
    token = ""
    if len(free) > size:
        free = free[:size]
        token = encode_token({"after": free[-1][0].isoformat()}, query_key)
    return session_pb2.ListSlotsResponse(
        slots=[
            session_pb2.Slot(
                clinician_id=request.clinician_id, start_time=timestamp(s), end_time=timestamp(e)
            )
            for s, e in free
        ],
        next_page_token=token,
    )
