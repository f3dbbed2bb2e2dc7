"""Clinicians' weekly hours, their exceptions, and the free slots they make."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Protocol

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from svc_session import schedule
from svc_session.models import (
    AvailabilityExceptionRow,
    AvailabilityRow,
    SlotClaimRow,
)
from svc_session.profiles import load_clinician
from svc_session.requests import EXTRA_HOURS, ExceptionQuery, NewException, SlotQuery, WeeklyHours
from telemesh.auth import Principal, require_self_or
from telemesh.errors import FailedPrecondition, NotFound
from telemesh.paging import decode_token, encode_token, page_of


def weekly_periods(hours_json: str) -> list[schedule.WeeklyPeriod]:
    """The weekly hours as stored (a JSON list of [day, start, end] in local minutes)."""
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
        extra_hours=row.kind == EXTRA_HOURS,
        start=0 if whole_day else schedule.parse_local_time(row.start_local_time),
        end=schedule.MINUTES_PER_DAY
        if whole_day
        else schedule.parse_local_time(row.end_local_time, allow_end_of_day=True),
    )


async def set_weekly(
    session: AsyncSession, principal: Principal, wanted: WeeklyHours
) -> AvailabilityRow:
    """Replaces the clinician's weekly hours (in their own time zone unless another is
    given)."""
    require_self_or(principal, "clinician", wanted.clinician_id, "admin")
    clinician = await load_clinician(session, wanted.clinician_id)
    now = datetime.now(UTC)
    row = await session.get(AvailabilityRow, wanted.clinician_id) or AvailabilityRow(
        clinician_id=wanted.clinician_id,
        time_zone="",
        slot_minutes=0,
        hours_json="[]",
        update_time=now,
    )
    row.time_zone = wanted.time_zone or clinician.time_zone
    row.slot_minutes = wanted.slot_minutes
    row.hours_json = json.dumps(sorted([p.day, p.start, p.end] for p in wanted.periods))
    row.update_time = now
    session.add(row)
    await session.flush()
    return row


async def weekly(session: AsyncSession, principal: Principal, clinician_id: str) -> AvailabilityRow:
    """The clinician's weekly hours as last set (theirs and admins' to read)."""
    require_self_or(principal, "clinician", clinician_id, "admin")
    row = await session.get(AvailabilityRow, clinician_id)
    if row is None:
        raise NotFound("availability", clinician_id)
    return row


async def add_exception(
    session: AsyncSession, principal: Principal, wanted: NewException
) -> AvailabilityExceptionRow:
    require_self_or(principal, "clinician", wanted.clinician_id, "admin")
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
    return row


async def delete_exception(session: AsyncSession, principal: Principal, exception_id: str) -> None:
    row = await session.get(AvailabilityExceptionRow, exception_id)
    if row is None:
        raise NotFound("availability_exception", exception_id)
    require_self_or(principal, "clinician", row.clinician_id, "admin")
    await session.delete(row)


async def list_exceptions(
    session: AsyncSession, principal: Principal, wanted: ExceptionQuery
) -> tuple[Sequence[AvailabilityExceptionRow], str]:
    """A page of the clinician's exceptions between two local dates, and the next
    page's token."""
    require_self_or(principal, "clinician", wanted.clinician_id, "admin")
    query_key = {"c": wanted.clinician_id, "s": wanted.first_date, "e": wanted.last_date}
    cursor = decode_token(wanted.page_token, query_key, {"d": str, "i": str})
    query = (
        select(AvailabilityExceptionRow)
        .where(AvailabilityExceptionRow.clinician_id == wanted.clinician_id)
        .where(col(AvailabilityExceptionRow.local_date) >= wanted.first_date)
        .where(col(AvailabilityExceptionRow.local_date) <= wanted.last_date)
        .order_by(
            col(AvailabilityExceptionRow.local_date), col(AvailabilityExceptionRow.exception_id)
        )
        .limit(wanted.page_size + 1)
    )
    if cursor is not None:
        query = query.where(
            (col(AvailabilityExceptionRow.local_date) > cursor["d"])
            | (
                (col(AvailabilityExceptionRow.local_date) == cursor["d"])
                & (col(AvailabilityExceptionRow.exception_id) > cursor["i"])
            )
        )
    return page_of(
        (await session.exec(query)).all(),
        wanted.page_size,
        lambda row: {"d": row.local_date, "i": row.exception_id},
        query_key,
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
        weekly_periods(hours_json),
        [_exception(row) for row in exceptions],
        start,
    )


async def slot_ending(session: AsyncSession, clinician_id: str, start: datetime) -> datetime | None:
    """The end of the clinician's slot starting at `start` (booked or not), if any."""
    availability, exceptions = await schedule_of(session, clinician_id, exception_dates(start))
    return schedule.slot_ending(
        availability.time_zone,
        availability.slot_minutes,
        weekly_periods(availability.hours_json),
        exceptions,
        start,
    )


async def offered_slots(
    session: AsyncSession, clinician_id: str, start: datetime, end: datetime
) -> list[tuple[datetime, datetime]]:
    """The clinician's slots starting in [start, end), booked or not."""
    availability, exceptions = await schedule_of(session, clinician_id)
    return schedule.slots(
        availability.time_zone,
        availability.slot_minutes,
        weekly_periods(availability.hours_json),
        exceptions,
        start,
        end,
    )


async def free_slots(
    session: AsyncSession, wanted: SlotQuery
) -> tuple[list[tuple[datetime, datetime]], str]:
    """A page of the clinician's free slots in the query's range, from now on, and the
    next page's token (any signed-in user may look for slots)."""
    now = datetime.now(UTC)
    query_key = {
        "c": wanted.clinician_id,
        "s": wanted.start.isoformat(),
        "e": wanted.end.isoformat(),
    }
    cursor = decode_token(wanted.page_token, query_key, {"after": str})
    from_time = max(wanted.start, now)
    if cursor is not None:
        from_time = max(
            from_time, datetime.fromisoformat(cursor["after"]) + timedelta(microseconds=1)
        )
    await load_clinician(session, wanted.clinician_id)
    offered = await offered_slots(session, wanted.clinician_id, from_time, wanted.end)
    claimed = set(
        (
            await session.exec(
                select(SlotClaimRow.block)
                .where(SlotClaimRow.clinician_id == wanted.clinician_id)
                .where(col(SlotClaimRow.block) >= schedule.block_of(from_time) - 60)
                .where(col(SlotClaimRow.block) <= schedule.block_of(wanted.end) + 60)
            )
        ).all()
    )
    free = [(s, e) for s, e in offered if not any(b in claimed for b in schedule.blocks(s, e))]
    token = ""
    if len(free) > wanted.page_size:
        free = free[: wanted.page_size]
        token = encode_token({"after": free[-1][0].isoformat()}, query_key)
    return free, token
