"""Slots as UTC instants from local weekly hours, across both daylight-saving switches."""

from __future__ import annotations

import itertools
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import grpc
import pytest

from svc_session import schedule
from telemesh.errors import reason_of
from telemesh.session.v1 import session_pb2
from tests.support.errors import bad_fields, refused
from tests.support.flows import ALL_WEEK, Flows, rid, ts

P = session_pb2
WORKDAYS = [schedule.WeeklyPeriod(day, 9 * 60, 17 * 60) for day in range(1, 6)]

# (zone, a date in the week of each switch, the UTC hour of 09:00 before and after)
SWITCHES = [
    ("America/New_York", date(2026, 3, 8), 14, 13),  # EST -> EDT
    ("America/New_York", date(2026, 11, 1), 13, 14),  # EDT -> EST
    ("Europe/London", date(2026, 3, 29), 9, 8),  # GMT -> BST
    ("Europe/London", date(2026, 10, 25), 8, 9),  # BST -> GMT
]


@pytest.mark.parametrize(("zone", "switch", "before", "after"), SWITCHES)
def test_nine_to_five_follows_the_clock_across_the_switch(
    zone: str, switch: date, before: int, after: int
) -> None:
    week_start = datetime.combine(switch - timedelta(days=6), datetime.min.time(), UTC)
    found = schedule.slots(zone, 30, WORKDAYS, [], week_start, week_start + timedelta(days=14))
    local = ZoneInfo(zone)
    by_day: dict[date, list[datetime]] = {}
    for start, end in found:
        assert end - start == timedelta(minutes=30), "every slot lasts what it says"
        by_day.setdefault(start.astimezone(local).date(), []).append(start)
    assert len(by_day) == 10, "ten working days in the two weeks around the switch"
    for day, starts in by_day.items():
        assert len(starts) == 16, f"{day}: 09:00-17:00 in 30-minute slots"
        first = starts[0].astimezone(local)
        assert (first.hour, first.minute) == (9, 0), "every day starts at 09:00 local"
        assert starts[0].hour == (before if day < switch else after)


@pytest.mark.parametrize(
    ("zone", "switch", "hours"),
    [
        ("America/New_York", date(2026, 3, 8), 3),  # 00:00-04:00 loses the 02:00 hour
        ("America/New_York", date(2026, 11, 1), 5),  # and gains a second 01:00 hour
        ("Europe/London", date(2026, 3, 29), 3),  # 01:00 -> 02:00
        ("Europe/London", date(2026, 10, 25), 5),
    ],
)
def test_hours_across_the_switch_itself_count_real_time(
    zone: str, switch: date, hours: int
) -> None:
    night = [schedule.WeeklyPeriod(switch.isoweekday(), 0, 4 * 60)]
    day_start = datetime.combine(switch - timedelta(days=1), datetime.min.time(), UTC)
    found = schedule.slots(zone, 60, night, [], day_start, day_start + timedelta(days=3))
    assert len(found) == hours
    assert all(b[0] - a[0] == timedelta(hours=1) for a, b in itertools.pairwise(found))


def test_exceptions_take_time_off_and_add_hours() -> None:
    day = date(2026, 6, 1)  # a Monday
    exceptions = [
        schedule.DateException(day, extra_hours=False, start=12 * 60, end=13 * 60),
        schedule.DateException(day, extra_hours=True, start=18 * 60, end=19 * 60),
        schedule.DateException(day + timedelta(days=1), extra_hours=False, start=0, end=24 * 60),
    ]
    start = datetime(2026, 6, 1, tzinfo=UTC)
    found = schedule.slots("UTC", 60, WORKDAYS, exceptions, start, start + timedelta(days=2))
    hours = [s.hour for s, _ in found]
    assert hours == [9, 10, 11, 13, 14, 15, 16, 18], "lunch off, an evening hour on, Tuesday off"


async def test_list_slots_over_the_service_in_a_daylight_saving_week(flows: Flows) -> None:
    hours = [
        P.WeeklyHours(
            day=P.DayOfWeek.ValueType(d), start_local_time="09:00", end_local_time="12:00"
        )
        for d in range(1, 8)
    ]
    clinician_id, md = await flows.clinician(
        time_zone="Europe/London", hours=hours, slot_minutes=60
    )
    switch = datetime(2027, 3, 28, tzinfo=UTC)  # next year's spring switch: still in the future
    reply = await flows.session.ListSlots(
        P.ListSlotsRequest(
            clinician_id=clinician_id,
            start_time=ts(switch - timedelta(days=2)),
            end_time=ts(switch + timedelta(days=2)),
        ),
        metadata=md,
    )
    starts = [s.start_time.ToDatetime(tzinfo=UTC) for s in reply.slots]
    assert [s.hour for s in starts] == [9, 10, 11, 9, 10, 11, 8, 9, 10, 8, 9, 10]
    paged = await flows.session.ListSlots(
        P.ListSlotsRequest(
            clinician_id=clinician_id,
            start_time=ts(switch - timedelta(days=2)),
            end_time=ts(switch + timedelta(days=2)),
            page_size=5,
        ),
        metadata=md,
    )
    second = await flows.session.ListSlots(
        P.ListSlotsRequest(
            clinician_id=clinician_id,
            start_time=ts(switch - timedelta(days=2)),
            end_time=ts(switch + timedelta(days=2)),
            page_size=5,
            page_token=paged.next_page_token,
        ),
        metadata=md,
    )
    assert [s.start_time for s in paged.slots] + [s.start_time for s in second.slots] == [
        s.start_time for s in reply.slots
    ][:10]


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"time_zone": "Mars/Olympus_Mons"}, "time_zone"),
        ({"slot_minutes": 7}, "slot_minutes"),
        (
            {
                "hours": [
                    P.WeeklyHours(
                        day=P.DAY_OF_WEEK_MONDAY, start_local_time="17:00", end_local_time="09:00"
                    )
                ]
            },
            "hours[0].end_local_time",
        ),
        (
            {
                "hours": [
                    P.WeeklyHours(
                        day=P.DAY_OF_WEEK_MONDAY, start_local_time="9am", end_local_time="17:00"
                    )
                ]
            },
            "hours[0].start_local_time",
        ),
        (
            {
                "hours": [
                    P.WeeklyHours(
                        day=P.DAY_OF_WEEK_MONDAY, start_local_time="09:00", end_local_time="12:00"
                    ),
                    P.WeeklyHours(
                        day=P.DAY_OF_WEEK_MONDAY, start_local_time="11:00", end_local_time="13:00"
                    ),
                ]
            },
            "hours[1]",
        ),
    ],
)
async def test_bad_weekly_hours_are_refused_and_nothing_changes(
    flows: Flows, change: dict[str, object], field: str
) -> None:
    clinician_id, md = await flows.clinician()
    fields: dict[str, object] = {"slot_minutes": 30, "hours": ALL_WEEK, **change}
    request = P.SetWeeklyAvailabilityRequest(request_id=rid(), clinician_id=clinician_id, **fields)  # type: ignore[arg-type]
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await flows.session.SetWeeklyAvailability(request, metadata=md)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field in bad_fields(caught.value)
    # Still the 5-minute all-week hours from before.
    now = datetime.now(UTC)
    reply = await flows.session.ListSlots(
        P.ListSlotsRequest(
            clinician_id=clinician_id, start_time=ts(now), end_time=ts(now + timedelta(hours=1))
        ),
        metadata=md,
    )
    assert len(reply.slots) >= 11


async def test_weekly_hours_read_back_as_they_were_set(flows: Flows) -> None:
    clinician_id, md = await flows.clinician(time_zone="Europe/Berlin")
    hours = [
        P.WeeklyHours(day=P.DAY_OF_WEEK_TUESDAY, start_local_time="13:30", end_local_time="17:00"),
        P.WeeklyHours(day=P.DAY_OF_WEEK_MONDAY, start_local_time="08:00", end_local_time="12:00"),
    ]
    await flows.session.SetWeeklyAvailability(
        P.SetWeeklyAvailabilityRequest(
            request_id=rid(), clinician_id=clinician_id, hours=hours, slot_minutes=20
        ),
        metadata=md,
    )
    # What the clinician's app shows after a reload: the hours as set, in their zone.
    reply = await flows.session.GetWeeklyAvailability(
        P.GetWeeklyAvailabilityRequest(clinician_id=clinician_id), metadata=md
    )
    got = reply.availability
    assert (got.clinician_id, got.time_zone, got.slot_minutes) == (
        clinician_id,
        "Europe/Berlin",
        20,
    )
    assert [(h.day, h.start_local_time, h.end_local_time) for h in got.hours] == [
        (P.DAY_OF_WEEK_MONDAY, "08:00", "12:00"),
        (P.DAY_OF_WEEK_TUESDAY, "13:30", "17:00"),
    ]


async def test_no_weekly_hours_yet_is_not_found(flows: Flows) -> None:
    clinician_id = f"c-{rid()[:8]}"
    md = flows.user("clinician", clinician_id)
    await flows.session.CreateClinician(
        P.CreateClinicianRequest(
            request_id=rid(),
            clinician=P.Clinician(
                clinician_id=clinician_id, display_name="Dr. New", time_zone="UTC", practice_id="p"
            ),
        ),
        metadata=md,
    )
    error = await refused(
        flows.session.GetWeeklyAvailability(
            P.GetWeeklyAvailabilityRequest(clinician_id=clinician_id), metadata=md
        )
    )
    assert error.code() == grpc.StatusCode.NOT_FOUND
    assert reason_of(error) == "AVAILABILITY_NOT_FOUND"
