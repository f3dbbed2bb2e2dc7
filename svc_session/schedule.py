"""Free slots from weekly hours in a clinician's own time zone (pure functions).

Hours and exceptions are local wall-clock times on local dates; slots are real
instants. Each working interval of a local date is turned into UTC instants first (its
start at the earlier reading of an ambiguous wall time, its end at the later one), then
cut into slots of real duration. So on a daylight-saving day a 09:00-17:00 clinician
starts at a different UTC hour, a spring-forward night has one hour fewer and a
fall-back night one hour more, and no slot is ever shorter or longer than booked.
"""

from __future__ import annotations

import zoneinfo
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from functools import cache

from svc_session.models import BLOCK_MINUTES
from telemesh.validation import ascii_digits

MINUTES_PER_DAY = 24 * 60


@cache
def known_time_zones() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())


def is_time_zone(name: str) -> bool:
    return name in known_time_zones()


def parse_local_time(value: str, *, allow_end_of_day: bool = False) -> int:
    """`HH:MM` as minutes after midnight; `24:00` only where it ends a day."""
    hours, sep, minutes = value.partition(":")
    if not sep or len(hours) != 2 or len(minutes) != 2 or not ascii_digits(hours + minutes):
        raise ValueError("must be HH:MM")
    total = int(hours) * 60 + int(minutes)
    limit = MINUTES_PER_DAY if allow_end_of_day else MINUTES_PER_DAY - 1
    if int(minutes) > 59 or total > limit:
        raise ValueError("is not a time of day")
    if total % BLOCK_MINUTES:
        raise ValueError(f"must be on a {BLOCK_MINUTES}-minute boundary")
    return total


def format_local_time(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


@dataclass(frozen=True)
class WeeklyPeriod:
    day: int  # ISO weekday, 1 = Monday
    start: int  # minutes after local midnight
    end: int


@dataclass(frozen=True)
class DateException:
    local_date: date
    extra_hours: bool  # False: time off
    start: int  # minutes; 0 and MINUTES_PER_DAY for a whole day off
    end: int


def _union(intervals: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    merged: list[tuple[int, int]] = []
    for start, end in sorted(intervals):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def _subtract(intervals: list[tuple[int, int]], cut: tuple[int, int]) -> list[tuple[int, int]]:
    result = []
    for start, end in intervals:
        if cut[1] <= start or cut[0] >= end:
            result.append((start, end))
            continue
        if start < cut[0]:
            result.append((start, cut[0]))
        if cut[1] < end:
            result.append((cut[1], end))
    return result


def local_intervals(
    local_date: date, weekly: Sequence[WeeklyPeriod], exceptions: Sequence[DateException]
) -> list[tuple[int, int]]:
    """The working minutes of one local date, after exceptions."""
    todays = [e for e in exceptions if e.local_date == local_date]
    working = _union(
        [(p.start, p.end) for p in weekly if p.day == local_date.isoweekday()]
        + [(e.start, e.end) for e in todays if e.extra_hours]
    )
    for off in (e for e in todays if not e.extra_hours):
        working = _subtract(working, (off.start, off.end))
    return working


def to_instant(local_date: date, minutes: int, zone: zoneinfo.ZoneInfo, *, later: bool) -> datetime:
    """The UTC instant of a local wall time; `later` picks the second reading of an
    ambiguous time (a fall-back hour). A time inside a spring-forward gap maps to the
    instant just after the gap."""
    day = local_date + timedelta(days=minutes // MINUTES_PER_DAY)
    wall = datetime.combine(day, time((minutes % MINUTES_PER_DAY) // 60, minutes % 60), tzinfo=zone)
    return wall.replace(fold=1 if later else 0).astimezone(UTC)


def block_of(instant: datetime) -> int:
    """The slot-claim block that starts at `instant` (minutes since epoch / grain)."""
    return int(instant.timestamp()) // 60 // BLOCK_MINUTES


def blocks(start: datetime, end: datetime) -> range:
    return range(block_of(start), block_of(end))


def is_on_grain(instant: datetime) -> bool:
    return instant.second == 0 and instant.microsecond == 0 and instant.minute % BLOCK_MINUTES == 0


def slots(
    zone_name: str,
    slot_minutes: int,
    weekly: Sequence[WeeklyPeriod],
    exceptions: Sequence[DateException],
    range_start: datetime,
    range_end: datetime,
) -> list[tuple[datetime, datetime]]:
    """Every slot whose start lies in [range_start, range_end), earliest first."""
    zone = zoneinfo.ZoneInfo(zone_name)
    length = timedelta(minutes=slot_minutes)
    first = range_start.astimezone(zone).date() - timedelta(days=1)
    last = range_end.astimezone(zone).date() + timedelta(days=1)
    found: dict[datetime, datetime] = {}
    day = first
    while day <= last:
        for start_minutes, end_minutes in local_intervals(day, weekly, exceptions):
            begin = to_instant(day, start_minutes, zone, later=False)
            finish = to_instant(day, end_minutes, zone, later=True)
            slot = begin
            while slot + length <= finish:
                if range_start <= slot < range_end:
                    found[slot] = slot + length
                slot += length
        day += timedelta(days=1)
    return sorted(found.items())


def slot_ending(
    zone_name: str,
    slot_minutes: int,
    weekly: Sequence[WeeklyPeriod],
    exceptions: Sequence[DateException],
    start: datetime,
) -> datetime | None:
    """The end of the slot that starts exactly at `start`, or None when none does.

    The same slots as `slots()`, without listing them all: only the local dates that
    can hold `start` are looked at.
    """
    zone = zoneinfo.ZoneInfo(zone_name)
    length = timedelta(minutes=slot_minutes)
    local_day = start.astimezone(zone).date()
    for day in (local_day - timedelta(days=1), local_day):
        for start_minutes, end_minutes in local_intervals(day, weekly, exceptions):
            begin = to_instant(day, start_minutes, zone, later=False)
            finish = to_instant(day, end_minutes, zone, later=True)
            if (
                begin <= start
                and start + length <= finish
                and (start - begin) % length == timedelta(0)
            ):
                return start + length
    return None
