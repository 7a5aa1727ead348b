"""Freeze windows: wall-clock weekly windows turned into UTC instants, across daylight saving."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st
from pydantic import ValidationError

from slotpool.domain.freeze import (
    BOUNDARY_HORIZON,
    CHAIN_LIMIT,
    FreezePolicy,
    FreezeSchedule,
    Occurrence,
    active_windows,
    freeze_ends_at,
    freeze_state,
    load_zone,
    next_boundary,
    occurrences,
)

SID = "fs-abcdefabcdef"


def sched(
    from_time: str, to_time: str, weekdays: list[int], tz: str | None = "UTC", **extra: Any
) -> FreezeSchedule:
    return FreezeSchedule(
        from_time=from_time, to_time=to_time, weekdays=weekdays, timezone=tz, **extra
    )


def at(text: str, tz: str = "UTC") -> datetime:
    """A wall time in ``tz`` (fold=0), e.g. ``at("2026-01-02 23:30", "Europe/Berlin")``."""
    return datetime.fromisoformat(text).replace(tzinfo=ZoneInfo(tz))


def utc(text: str) -> datetime:
    return at(text, "UTC")


def frozen(schedules: list[FreezeSchedule], now: datetime, default_tz: str = "UTC") -> bool:
    return bool(active_windows(schedules, now=now, default_tz=default_tz))


# -- overnight windows -------------------------------------------------------------------------

# 2026-01-02 is a Friday.
FRIDAY_NIGHT = sched("23:00", "02:00", [5], "Europe/Berlin")


@pytest.mark.parametrize(
    ("local", "inside"),
    [
        ("2026-01-02 01:00", False),  # Friday 01:00: the window starts on Friday, not before
        ("2026-01-02 22:59", False),
        ("2026-01-02 23:00", True),  # start inclusive
        ("2026-01-02 23:30", True),
        ("2026-01-03 00:00", True),
        ("2026-01-03 01:00", True),  # Saturday 01:00: the overnight part
        ("2026-01-03 01:59", True),
        ("2026-01-03 02:00", False),  # end exclusive
        ("2026-01-03 23:30", False),  # Saturday night is not listed
        ("2026-01-01 23:30", False),  # nor Thursday night
    ],
)
def test_friday_overnight_window(local: str, inside: bool) -> None:
    assert frozen([FRIDAY_NIGHT], at(local, "Europe/Berlin")) is inside


def test_sunday_overnight_window_reaches_monday() -> None:
    window = sched("22:00", "01:00", [7])
    assert frozen([window], utc("2026-01-05 00:30"))  # Monday
    assert not frozen([window], utc("2026-01-06 00:30"))  # Tuesday


# -- daylight saving: same wall-clock time all year ----------------------------------------------

DST_CASES = [
    # zone, monday (winter), monday (summer), UTC start in winter, UTC start in summer
    ("America/New_York", "2026-01-05", "2026-07-06", "14:00", "13:00"),
    ("Europe/Berlin", "2026-01-05", "2026-07-06", "08:00", "07:00"),
]


@pytest.mark.parametrize(("tz", "winter", "summer", "winter_utc", "summer_utc"), DST_CASES)
def test_window_keeps_its_wall_clock_time(
    tz: str, winter: str, summer: str, winter_utc: str, summer_utc: str
) -> None:
    window = sched("09:00", "10:00", [1], tz)
    for day, start_utc in ((winter, winter_utc), (summer, summer_utc)):
        start = utc(f"{day} {start_utc}")
        found = occurrences(window, start=start - timedelta(hours=12), end=start, default_tz="UTC")
        assert [(o.start, o.end) for o in found] == []
        [occ] = occurrences(window, start=start, end=start + timedelta(hours=1), default_tz="UTC")
        assert (occ.start, occ.end) == (start, start + timedelta(hours=1))
        assert occ.start.astimezone(ZoneInfo(tz)).time() == time(9, 0)


@pytest.mark.parametrize(
    ("instant", "inside"),
    [
        ("2026-01-05 14:30", True),  # 09:30 EST
        ("2026-01-05 13:30", False),  # 08:30 EST
        ("2026-07-06 13:30", True),  # 09:30 EDT
        ("2026-07-06 14:30", False),  # 10:30 EDT: inside in winter, outside in summer
        ("2026-03-02 14:30", True),  # Monday before the change (DST starts 2026-03-08)
        ("2026-03-09 14:30", False),  # Monday after it
        ("2026-03-09 13:30", True),
    ],
)
def test_new_york_window_across_the_change(instant: str, inside: bool) -> None:
    assert frozen([sched("09:00", "10:00", [1], "America/New_York")], utc(instant)) is inside


@pytest.mark.parametrize(
    ("instant", "inside"),
    [
        ("2026-01-04 22:30", True),  # Monday 09:30 AEDT (+11), still Sunday in UTC
        ("2026-01-04 23:30", False),
        ("2026-07-05 23:30", True),  # Monday 09:30 AEST (+10)
        ("2026-07-05 22:30", False),  # inside in the southern summer, outside in winter
    ],
)
def test_sydney_window_across_seasons(instant: str, inside: bool) -> None:
    assert frozen([sched("09:00", "10:00", [1], "Australia/Sydney")], utc(instant)) is inside


def test_occurrences_across_the_change_keep_local_time() -> None:
    window = sched("09:00", "10:00", [1], "America/New_York")
    found = occurrences(
        window, start=utc("2026-03-01 00:00"), end=utc("2026-03-15 00:00"), default_tz="UTC"
    )
    assert [o.start for o in found] == [utc("2026-03-02 14:00"), utc("2026-03-09 13:00")]


# -- daylight saving: times that do not exist or exist twice (fold=0) ---------------------------


@pytest.mark.parametrize(
    ("from_time", "to_time", "expected"),
    [
        # 2026-03-08 New York: 02:00-02:59 does not exist; fold=0 moves it forward by the gap.
        ("02:00", "04:00", ("07:00", "08:00")),  # 03:00-04:00 EDT
        ("01:30", "02:30", ("06:30", "07:30")),  # 01:30 EST to 03:30 EDT
        ("02:30", "03:30", None),  # both are 03:30 EDT: no length, dropped
        ("02:30", "03:15", None),  # 03:30 EDT to 03:15 EDT: dropped
    ],
)
def test_spring_forward_gap_moves_forward(
    from_time: str, to_time: str, expected: tuple[str, str] | None
) -> None:
    window = sched(from_time, to_time, [7], "America/New_York")
    found = occurrences(
        window, start=utc("2026-03-08 00:00"), end=utc("2026-03-09 00:00"), default_tz="UTC"
    )
    spans = [(o.start, o.end) for o in found]
    want = [] if expected is None else [tuple(utc(f"2026-03-08 {t}") for t in expected)]
    assert spans == want


@pytest.mark.parametrize(
    ("from_time", "to_time", "expected"),
    [
        # 2026-11-01 New York: 01:00-01:59 happens twice; fold=0 takes the first (EDT, -4).
        ("01:00", "01:30", ("05:00", "05:30")),
        ("00:30", "01:30", ("04:30", "05:30")),
        ("01:30", "02:00", ("05:30", "07:00")),  # 01:30 EDT to 02:00 EST: 90 minutes
    ],
)
def test_fall_back_takes_the_first_time(
    from_time: str, to_time: str, expected: tuple[str, str]
) -> None:
    window = sched(from_time, to_time, [7], "America/New_York")
    [occ] = occurrences(
        window, start=utc("2026-11-01 00:00"), end=utc("2026-11-02 00:00"), default_tz="UTC"
    )
    assert (occ.start, occ.end) == tuple(utc(f"2026-11-01 {t}") for t in expected)


def test_repeated_hour_second_pass_is_outside() -> None:
    window = sched("01:00", "01:30", [7], "America/New_York")
    assert frozen([window], utc("2026-11-01 05:15"))  # first 01:15 (EDT)
    assert not frozen([window], utc("2026-11-01 06:15"))  # second 01:15 (EST)


# -- validation ---------------------------------------------------------------------------------

GOOD = {"from_time": "09:00", "to_time": "17:00", "weekdays": [1]}


@pytest.mark.parametrize(
    ("change", "loc", "needle"),
    [
        ({"to_time": "09:00"}, ("to_time",), "needs a length"),
        ({"from_time": "17:00"}, ("to_time",), "overnight"),
        ({"from_time": "24:00"}, ("from_time",), "HH:MM"),
        ({"from_time": "9:00"}, ("from_time",), "HH:MM"),
        ({"to_time": "12:60"}, ("to_time",), "HH:MM"),
        ({"to_time": "ab:cd"}, ("to_time",), "HH:MM"),
        ({"to_time": "12:00:00"}, ("to_time",), "HH:MM"),
        ({"to_time": "12:00\n"}, ("to_time",), "HH:MM"),
        ({"to_time": "\uff11\uff12:\uff10\uff10"}, ("to_time",), "HH:MM"),  # fullwidth digits
        ({"weekdays": []}, ("weekdays",), "at least one"),
        ({"weekdays": [0]}, ("weekdays",), "weekday 0"),
        ({"weekdays": [1, 8]}, ("weekdays",), "weekday 8"),
        ({"weekdays": [5, 1, 5]}, ("weekdays",), "weekday 5 appears more than once"),
        ({"weekdays": ["1"]}, ("weekdays", 0), "integer"),
        ({"timezone": "Mars/Olympus"}, ("timezone",), "unknown time zone"),
        ({"timezone": "Europe"}, ("timezone",), "unknown time zone"),
        ({"timezone": "../etc/passwd"}, ("timezone",), "unknown time zone"),
        ({"timezone": "localtime"}, ("timezone",), "unknown time zone"),
        ({"policy": "freeze"}, ("policy",), "scale_to_zero"),
        ({"note": "x" * 501}, ("note",), "500"),
        ({"id": "fs-ABC"}, ("id",), "pattern"),
        ({"cron": "* * * * *"}, ("cron",), "Extra inputs"),
        ({"weekday": [1]}, ("weekday",), "Extra inputs"),
    ],
)
def test_invalid_schedules_are_refused(
    change: dict[str, Any], loc: tuple[str | int, ...], needle: str
) -> None:
    with pytest.raises(ValidationError) as caught:
        FreezeSchedule.model_validate({**GOOD, **change})
    errors = {error["loc"]: error["msg"] for error in caught.value.errors()}
    assert loc in errors, errors
    assert needle in errors[loc]


def test_valid_schedule_keeps_its_shape() -> None:
    raw = {
        "id": SID,
        "from_time": "23:00",
        "to_time": "02:00",
        "weekdays": [5, 1, 3],
        "timezone": "Europe/Berlin",
        "policy": "no_new_tasks",
        "note": "release weekend",
    }
    schedule = FreezeSchedule.model_validate(raw)
    assert schedule.weekdays == [5, 1, 3]
    assert schedule.overnight
    assert schedule.policy is FreezePolicy.no_new_tasks
    assert schedule.model_dump(mode="json") == raw


def test_defaults_and_default_zone() -> None:
    schedule = FreezeSchedule.model_validate(GOOD)
    assert (schedule.id, schedule.timezone, schedule.note) == (None, None, "")
    assert schedule.policy is FreezePolicy.scale_to_zero
    assert schedule.zone("America/New_York") == ZoneInfo("America/New_York")
    # 09:00 on 2026-01-05 (a Monday): 14:00 UTC in New York, 09:00 UTC with a UTC default.
    assert frozen([schedule], utc("2026-01-05 14:30"), default_tz="America/New_York")
    assert not frozen([schedule], utc("2026-01-05 14:30"), default_tz="Asia/Tokyo")
    assert frozen([schedule], utc("2026-01-05 09:30"), default_tz="UTC")


def test_unknown_default_zone_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="unknown time zone"):
        load_zone("Nowhere/Special")


# -- occurrences ---------------------------------------------------------------------------------


def test_occurrences_in_a_range_are_sorted_and_overlapping() -> None:
    window = sched("09:00", "10:00", [5, 1, 3])
    found = occurrences(
        window, start=utc("2026-01-05 09:30"), end=utc("2026-01-16 09:00"), default_tz="UTC"
    )
    assert [o.start.day for o in found] == [5, 7, 9, 12, 14]  # the 16th starts at the end
    assert all(o.start.tzinfo is UTC and o.end.tzinfo is UTC for o in found)


def test_empty_range_has_no_occurrences() -> None:
    start = utc("2026-01-05 09:30")
    assert occurrences(sched("09:00", "10:00", [1]), start=start, end=start, default_tz="UTC") == []


# -- the end of a freeze --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("windows", "now", "expected"),
    [
        # Monday 2026-01-05 night into Tuesday, chained with a Tuesday morning window.
        (
            [("22:00", "06:00", [1]), ("06:00", "08:00", [2])],
            "2026-01-05 23:00",
            "2026-01-06 08:00",
        ),
        (
            [("22:00", "06:00", [1]), ("05:00", "07:00", [2])],
            "2026-01-06 01:00",
            "2026-01-06 07:00",
        ),
        (
            [("22:00", "06:00", [1]), ("06:01", "08:00", [2])],
            "2026-01-05 23:00",
            "2026-01-06 06:00",
        ),
        (
            [("22:00", "06:00", [1]), ("06:00", "08:00", [2])],
            "2026-01-06 07:00",
            "2026-01-06 08:00",
        ),
        ([("22:00", "06:00", [1])], "2026-01-05 21:59", None),
        ([], "2026-01-05 23:00", None),
    ],
)
def test_freeze_ends_at_follows_chains(
    windows: list[tuple[str, str, list[int]]], now: str, expected: str | None
) -> None:
    schedules = [sched(*w) for w in windows]
    end = freeze_ends_at(schedules, now=utc(now), default_tz="UTC")
    assert end == (None if expected is None else utc(expected))


def test_freeze_without_end_stops_after_the_chain_limit() -> None:
    every_day = [1, 2, 3, 4, 5, 6, 7]
    schedules = [sched("00:00", "12:00", every_day), sched("12:00", "00:00", every_day)]
    now = utc("2026-01-05 03:00")
    end = freeze_ends_at(schedules, now=now, default_tz="UTC")
    assert end is not None
    assert now + CHAIN_LIMIT <= end < now + CHAIN_LIMIT + timedelta(days=1)


# -- state, one-time unfreeze, reason -----------------------------------------------------------

NIGHT = sched("22:00", "06:00", [1], id=SID)
IN_NIGHT = utc("2026-01-05 23:00")


def test_state_while_frozen() -> None:
    state = freeze_state([NIGHT], now=IN_NIGHT, default_tz="UTC", unfreeze_until=None)
    assert state.active
    assert state.policy is FreezePolicy.scale_to_zero
    assert state.windows == (
        Occurrence(SID, utc("2026-01-05 22:00"), utc("2026-01-06 06:00"), NIGHT.policy),
    )
    assert state.until == utc("2026-01-06 06:00")
    assert state.lifted_until is None
    assert state.reason() == (
        f"frozen by window {SID} (Mon 22:00-06:00 UTC, scale_to_zero) until 2026-01-06T06:00:00Z"
    )


def test_reason_names_the_local_day_and_zone() -> None:
    window = sched("23:00", "02:00", [5], "Europe/Berlin", id=SID)
    state = freeze_state(
        [window], now=at("2026-01-03 01:00", "Europe/Berlin"), default_tz="UTC", unfreeze_until=None
    )
    assert state.reason() == (
        f"frozen by window {SID} (Fri 23:00-02:00 Europe/Berlin, scale_to_zero) "
        "until 2026-01-03T01:00:00Z"
    )


def test_no_new_tasks_wins_over_scale_to_zero() -> None:
    strict = sched("23:00", "23:30", [1], policy="no_new_tasks")
    state = freeze_state([NIGHT, strict], now=IN_NIGHT, default_tz="UTC", unfreeze_until=None)
    assert state.policy is FreezePolicy.no_new_tasks
    assert len(state.windows) == 2
    assert state.reason().startswith("frozen by windows ")


@pytest.mark.parametrize(
    ("unfreeze_until", "active", "lifted_until"),
    [
        (None, True, None),
        ("2026-01-06 02:00", False, "2026-01-06 02:00"),  # lifts the active window
        ("2026-01-20 00:00", False, "2026-01-20 00:00"),  # beyond the window: still lifted
        ("2026-01-05 23:00", True, None),  # ends right now: no longer lifts
        ("2026-01-05 20:00", True, None),  # in the past: ignored
    ],
)
def test_one_time_unfreeze(
    unfreeze_until: str | None, active: bool, lifted_until: str | None
) -> None:
    until = None if unfreeze_until is None else utc(unfreeze_until)
    state = freeze_state([NIGHT], now=IN_NIGHT, default_tz="UTC", unfreeze_until=until)
    assert state.active is active
    assert state.lifted_until == (None if lifted_until is None else utc(lifted_until))
    if not active:
        assert (state.policy, state.windows, state.until) == (None, (), None)
        assert lifted_until is not None
        iso = lifted_until.replace(" ", "T") + ":00Z"
        assert state.reason() == f"not frozen: freeze windows lifted until {iso}"


def test_future_unfreeze_without_active_window_is_reported() -> None:
    now = utc("2026-01-05 12:00")
    until = utc("2026-01-06 12:00")
    state = freeze_state([NIGHT], now=now, default_tz="UTC", unfreeze_until=until)
    assert (state.active, state.lifted_until, state.windows) == (False, until, ())


def test_state_without_windows() -> None:
    state = freeze_state(
        [NIGHT], now=utc("2026-01-05 12:00"), default_tz="UTC", unfreeze_until=None
    )
    assert (state.active, state.policy, state.until, state.lifted_until) == (
        False,
        None,
        None,
        None,
    )
    assert state.reason() == "not frozen: no freeze window is in force"


# -- next boundary ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("schedules", "now", "unfreeze_until", "expected"),
    [
        ([NIGHT], "2026-01-05 12:00", None, "2026-01-05 22:00"),  # next start
        ([NIGHT], "2026-01-05 22:00", None, "2026-01-06 06:00"),  # strictly after now
        ([NIGHT], "2026-01-05 23:00", None, "2026-01-06 06:00"),  # the end
        ([NIGHT], "2026-01-06 06:00", None, "2026-01-12 22:00"),  # next week
        ([NIGHT], "2026-01-05 23:00", "2026-01-06 02:00", "2026-01-06 02:00"),  # unfreeze ends
        ([NIGHT], "2026-01-05 12:00", "2026-01-07 00:00", "2026-01-07 00:00"),  # skips lifted
        ([NIGHT], "2026-01-05 23:00", "2026-01-05 20:00", "2026-01-06 06:00"),  # past: ignored
        ([NIGHT], "2026-01-05 12:00", "2026-01-30 00:00", None),  # lifted past the horizon
        ([], "2026-01-05 12:00", None, None),
        ([], "2026-01-05 12:00", "2026-01-06 00:00", "2026-01-06 00:00"),
    ],
)
def test_next_boundary(
    schedules: list[FreezeSchedule], now: str, unfreeze_until: str | None, expected: str | None
) -> None:
    until = None if unfreeze_until is None else utc(unfreeze_until)
    found = next_boundary(schedules, now=utc(now), default_tz="UTC", unfreeze_until=until)
    assert found == (None if expected is None else utc(expected))


# -- properties ----------------------------------------------------------------------------------

ZONES = [
    "UTC",
    "America/New_York",
    "Europe/Berlin",
    "Australia/Sydney",
    "Asia/Kolkata",
    "Asia/Kathmandu",
    "America/St_Johns",
    "Pacific/Chatham",
]
EVERY_MINUTE = st.integers(0, 24 * 60 - 1)
instants = st.datetimes(
    min_value=datetime(2001, 1, 1), max_value=datetime(2037, 12, 31), timezones=st.just(UTC)
)


def hhmm(minute: int) -> str:
    return f"{minute // 60:02d}:{minute % 60:02d}"


@st.composite
def schedules(draw: st.DrawFn, index: int = 0) -> FreezeSchedule:
    start = draw(EVERY_MINUTE)
    end = (start + draw(st.integers(1, 24 * 60 - 1))) % (24 * 60)  # never equal to start
    return FreezeSchedule(
        id=f"fs-{index:012d}",
        from_time=hhmm(start),
        to_time=hhmm(end),
        weekdays=draw(st.lists(st.integers(1, 7), min_size=1, max_size=7, unique=True)),
        timezone=draw(st.sampled_from([*ZONES, None])),
        policy=draw(st.sampled_from(FreezePolicy)),
    )


@st.composite
def schedule_lists(draw: st.DrawFn) -> list[FreezeSchedule]:
    count = draw(st.integers(1, 3))
    return [draw(schedules(index)) for index in range(count)]


def oracle_covers(schedule: FreezeSchedule, now: datetime, default_tz: str) -> bool:
    """Membership read straight off the local wall clock, without building any occurrence."""
    local = now.astimezone(ZoneInfo(schedule.timezone or default_tz))
    clock = local.time().replace(tzinfo=None)
    start = time.fromisoformat(schedule.from_time)
    end = time.fromisoformat(schedule.to_time)
    today = local.isoweekday()
    yesterday = (today - 2) % 7 + 1
    if start < end:
        return today in schedule.weekdays and start <= clock < end
    return (today in schedule.weekdays and clock >= start) or (
        yesterday in schedule.weekdays and clock < end
    )


def steady_offset(zone_name: str, now: datetime) -> bool:
    """No UTC-offset change within a day either side: wall clock and UTC then agree exactly."""
    zone = ZoneInfo(zone_name)
    probes = (now - timedelta(hours=26), now, now + timedelta(hours=26))
    return len({probe.astimezone(zone).utcoffset() for probe in probes}) == 1


@given(schedule_lists(), instants, st.sampled_from(ZONES))
def test_active_windows_agree_with_a_wall_clock_oracle(
    schedules: list[FreezeSchedule], now: datetime, default_tz: str
) -> None:
    for schedule in schedules:
        assume(steady_offset(schedule.timezone or default_tz, now))
    expected = {s.id for s in schedules if oracle_covers(s, now, default_tz)}
    found = active_windows(schedules, now=now, default_tz=default_tz)
    assert {o.schedule_id for o in found} == expected
    assert all(o.start <= now < o.end for o in found)


@given(schedule_lists(), instants, st.sampled_from(ZONES), st.lists(st.floats(0, 1), max_size=5))
def test_freeze_ends_at_is_the_first_free_instant(
    schedules: list[FreezeSchedule], now: datetime, default_tz: str, fractions: list[float]
) -> None:
    end = freeze_ends_at(schedules, now=now, default_tz=default_tz)
    in_force = active_windows(schedules, now=now, default_tz=default_tz)
    if end is None:
        assert not in_force
        return
    assert end > now
    if end < now + CHAIN_LIMIT:
        assert not active_windows(schedules, now=end, default_tz=default_tz)
    for fraction in [0.0, *fractions]:
        probe = min(now + (end - now) * fraction, end - timedelta(microseconds=1))
        assert active_windows(schedules, now=probe, default_tz=default_tz), probe


@given(schedule_lists(), instants, st.sampled_from(ZONES), st.floats(0, 1))
def test_nothing_changes_before_the_next_boundary(
    schedules: list[FreezeSchedule], now: datetime, default_tz: str, fraction: float
) -> None:
    boundary = next_boundary(schedules, now=now, default_tz=default_tz, unfreeze_until=None)
    last = boundary if boundary is not None else now + BOUNDARY_HORIZON
    assert last > now
    probe = min(now + (last - now) * fraction, last - timedelta(microseconds=1))
    before = active_windows(schedules, now=now, default_tz=default_tz)
    assert active_windows(schedules, now=probe, default_tz=default_tz) == before


@given(schedule_lists(), instants, st.sampled_from(ZONES))
def test_occurrences_are_sorted_utc_and_non_empty(
    schedules: list[FreezeSchedule], now: datetime, default_tz: str
) -> None:
    for schedule in schedules:
        found = occurrences(schedule, start=now, end=now + timedelta(days=9), default_tz=default_tz)
        assert [o.start for o in found] == sorted(o.start for o in found)
        assert all(o.start < o.end and o.start.utcoffset() == timedelta(0) for o in found)
        assert all(o.end > now and o.start < now + timedelta(days=9) for o in found)


naive = st.datetimes(min_value=datetime(2001, 1, 1), max_value=datetime(2037, 12, 31))


@given(naive, instants)
def test_naive_datetimes_are_refused(naive_now: datetime, aware: datetime) -> None:
    window = [sched("09:00", "10:00", [1])]
    calls: list[Callable[[], object]] = [
        lambda: active_windows(window, now=naive_now, default_tz="UTC"),
        lambda: freeze_ends_at(window, now=naive_now, default_tz="UTC"),
        lambda: freeze_state(window, now=naive_now, default_tz="UTC", unfreeze_until=None),
        lambda: freeze_state(window, now=aware, default_tz="UTC", unfreeze_until=naive_now),
        lambda: next_boundary(window, now=naive_now, default_tz="UTC", unfreeze_until=None),
        lambda: occurrences(window[0], start=naive_now, end=aware, default_tz="UTC"),
        lambda: occurrences(window[0], start=aware, end=naive_now, default_tz="UTC"),
    ]
    for call in calls:
        with pytest.raises(ValueError, match="timezone-aware"):
            call()
