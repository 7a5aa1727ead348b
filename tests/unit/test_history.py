"""The pure parts of a pool's history: the sampling grid, ranges as text, the chart's points
(steps holding the peaks, gaps where nothing was sampled) and the freeze intervals of a range."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from slotpool.domain.freeze import FreezePolicy, FreezeSchedule, freeze_intervals
from slotpool.domain.history import (
    MAX_POINTS,
    Point,
    PoolLoad,
    PoolSample,
    parse_span,
    resample,
    sample_time,
    span_text,
    stale_after,
    step_for,
)

T0 = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)  # a Friday
SECOND = timedelta(seconds=1)
MINUTE = timedelta(minutes=1)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def sample(seconds: float, busy: int, **values: int) -> PoolSample:
    return PoolSample("pool-0123456789abcdef", at(seconds), PoolLoad(slots_busy=busy, **values))


def busy(points: list[Point]) -> list[int | None]:
    return [p.load.slots_busy if p.load else None for p in points]


def test_sample_instants_are_on_the_grid_of_the_interval() -> None:
    assert sample_time(at(29.9), 15 * SECOND) == at(15)
    assert sample_time(at(30), 15 * SECOND) == at(30)
    assert sample_time(at(59), MINUTE) == at(0)


@pytest.mark.parametrize(
    ("text", "span"),
    [
        ("15m", 15 * MINUTE),
        ("1h", timedelta(hours=1)),
        ("24h", timedelta(days=1)),
        ("7d", timedelta(days=7)),
    ],
)
def test_ranges_are_whole_minutes_hours_or_days(text: str, span: timedelta) -> None:
    assert parse_span(text) == span
    assert span_text(span) == text.replace("24h", "1d")


@pytest.mark.parametrize("text", ["", "1", "0h", "1.5h", "1w", "-1h", "1 h", "h", "01h", "1H"])
def test_anything_else_is_refused_saying_what_is_valid(text: str) -> None:
    with pytest.raises(ValueError, match="such as 15m, 1h, 6h, 24h or 7d"):
        parse_span(text)


def test_the_step_is_the_interval_or_longer_to_keep_the_points_few() -> None:
    assert step_for(timedelta(hours=1), 15 * SECOND) == 15 * SECOND
    week = step_for(timedelta(days=7), 15 * SECOND)
    assert week == timedelta(seconds=605)
    assert timedelta(days=7) / week <= MAX_POINTS


def test_a_sample_holds_until_the_next_and_each_step_keeps_its_peak() -> None:
    samples = [sample(-40, 1), sample(10, 3), sample(20, 5), sample(25, 2), sample(70, 0)]
    points = resample(samples, since=at(0), until=at(90), step=30 * SECOND, stale=MINUTE * 10)
    assert [p.at for p in points] == [at(0), at(30), at(60), at(90)]
    # 0-30: 1 in force from before, then 3, 5, 2 -> 5; 30-60: 2 holds; 60-90: 2, then 0.
    assert busy(points) == [5, 2, 2, 0]


def test_every_series_keeps_its_own_peak_and_desired_may_be_unknown() -> None:
    samples = [
        sample(0, 4, tasks_queued=0, pods_desired=2),
        sample(5, 1, tasks_queued=9),
    ]
    (point,) = resample(samples, since=at(0), until=at(9), step=10 * SECOND, stale=MINUTE)
    assert point.load == PoolLoad(slots_busy=4, tasks_queued=9, pods_desired=2)


def test_the_slots_of_a_step_are_its_busiest_instant_so_they_stack_to_a_real_capacity() -> None:
    samples = [
        sample(0, 1, slots_idle=5),  # 6 slots
        sample(3, 5, slots_reserved=1, slots_idle=0),  # 6 slots, the busiest
        sample(6, 0, slots_idle=2),  # 2 slots
    ]
    (point,) = resample(samples, since=at(0), until=at(9), step=10 * SECOND, stale=MINUTE)
    assert point.load is not None
    slots = (point.load.slots_busy, point.load.slots_reserved, point.load.slots_idle)
    assert slots == (5, 1, 0)  # not the peaks of each (5, 1, 5): 11 slots the pool never had


def test_a_sample_older_than_stale_holds_no_longer_the_chart_shows_a_gap() -> None:
    samples = [sample(0, 2), sample(100, 1)]
    points = resample(samples, since=at(0), until=at(119), step=20 * SECOND, stale=30 * SECOND)
    assert busy(points) == [2, 2, None, None, None, 1]


def test_points_stay_on_the_step_grid_whatever_the_start() -> None:
    points = resample([sample(0, 1)], since=at(7), until=at(37), step=10 * SECOND, stale=MINUTE)
    assert [p.at for p in points] == [at(0), at(10), at(20), at(30)]


def test_no_sample_at_all_is_all_gaps() -> None:
    points = resample([], since=at(0), until=at(29), step=10 * SECOND, stale=MINUTE)
    assert busy(points) == [None, None, None]


def test_stale_after_allows_the_rewrite_period_and_some_slack() -> None:
    assert stale_after(15 * SECOND) == timedelta(minutes=5, seconds=30)


# -- freeze intervals -------------------------------------------------------------------------


def window(frm: str, to: str, days: list[int], **extra: object) -> FreezeSchedule:
    return FreezeSchedule.model_validate(
        {"from_time": frm, "to_time": to, "weekdays": days, **extra}
    )


def test_overlapping_and_adjacent_windows_are_one_interval_clipped_to_the_range() -> None:
    friday, saturday = 5, 6
    schedules = [
        window("23:00", "02:00", [friday], id="fs-aaaaaaaaaaaa"),  # Fri 23:00 - Sat 02:00
        window("02:00", "04:00", [saturday], policy="no_new_tasks"),  # adjacent
        window("01:00", "01:30", [saturday]),  # inside
    ]
    start, end = datetime(2026, 11, 20, 22, 0, tzinfo=UTC), datetime(2026, 11, 21, 3, 0, tzinfo=UTC)
    (interval,) = freeze_intervals(schedules, start=start, end=end, default_tz="UTC")
    assert (interval.start, interval.end) == (datetime(2026, 11, 20, 23, 0, tzinfo=UTC), end)
    assert interval.policy is FreezePolicy.no_new_tasks
    assert len(interval.windows) == 3
    assert interval.windows[0] == "fs-aaaaaaaaaaaa (Fri 23:00-02:00 UTC, scale_to_zero)"


def test_windows_are_in_their_zone_across_a_daylight_saving_change() -> None:
    # Berlin leaves summer time on Sunday 2026-10-25: 08:00-09:00 is 06:00 UTC on Saturday and
    # 07:00 UTC on Sunday.
    schedules = [window("08:00", "09:00", [6, 7], timezone="Europe/Berlin")]
    start = datetime(2026, 10, 24, 0, 0, tzinfo=UTC)
    found = freeze_intervals(
        schedules, start=start, end=start + timedelta(days=2), default_tz="UTC"
    )
    assert [(i.start.hour, i.end.hour) for i in found] == [(6, 7), (7, 8)]


def test_a_one_time_unfreeze_cuts_its_span_out() -> None:
    schedules = [window("10:00", "14:00", [5])]
    lifted = (at(0), at(3600))  # 12:00-13:00 on that Friday
    found = freeze_intervals(
        schedules,
        start=T0 - timedelta(hours=6),
        end=T0 + timedelta(hours=6),
        default_tz="UTC",
        lifted=lifted,
    )
    assert [(i.start.hour, i.end.hour) for i in found] == [(10, 12), (13, 14)]


def test_no_window_in_the_range_is_no_interval() -> None:
    schedules = [window("10:00", "11:00", [1])]  # Mondays
    assert (
        freeze_intervals(schedules, start=T0, end=T0 + timedelta(hours=6), default_tz="UTC") == []
    )
