"""Freeze windows: when a pool must not add capacity, and until when.

Operators think of freezes as wall-clock times in their own zone ("Fridays 23:00 to 02:00 in
Berlin"), while the controller needs UTC instants to sleep until. This module is the one place that
turns the first into the second, so daylight-saving rules are decided once and tested here. It has
no clock: every function takes ``now``.

Daylight-saving rule: wall times are resolved with zoneinfo ``fold=0``. A time skipped by a
spring-forward gap moves forward by the gap (02:30 becomes 03:30 in New York); a time repeated by
a fall-back is its first occurrence. An occurrence that ends up with no length is dropped.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, time, timedelta
from enum import StrEnum
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, StrictInt, ValidationInfo, field_validator

from slotpool.domain.bounds import StrictModel
from slotpool.domain.text import Text

SCHEDULE_ID_PATTERN = r"^fs-[a-z0-9]{12}$"
WEEKDAY_NAMES = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
# Longer than a week, so a controller always learns about the next weekly window.
BOUNDARY_HORIZON = timedelta(days=8)
# A freeze chained for longer than this is reported as ending where the search stopped; it keeps
# the default of a one-time unfreeze within what the service accepts (31 days).
CHAIN_LIMIT = timedelta(days=14)

_HHMM = re.compile(r"([01][0-9]|2[0-3]):[0-5][0-9]")
_ONE_DAY = timedelta(days=1)
# "localtime" resolves to the host's zone file: not an IANA name, and different on every host.
_NOT_IANA = frozenset({"localtime"})


class FreezePolicy(StrEnum):
    scale_to_zero = "scale_to_zero"
    no_new_tasks = "no_new_tasks"


def load_zone(name: str) -> ZoneInfo:
    """The IANA zone ``name``; ValueError (not zoneinfo's KeyError or OSError) when unknown."""
    try:
        if name in _NOT_IANA:
            raise ZoneInfoNotFoundError(name)
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        message = f"unknown time zone {name!r}: give an IANA name such as Europe/Berlin"
        raise ValueError(message) from None


def _check_hhmm(value: str) -> str:
    if not _HHMM.fullmatch(value):
        raise ValueError(f"{value!r} is not a time HH:MM from 00:00 to 23:59 (two digits each)")
    return value


def _parse_hhmm(value: str) -> time:
    hours, minutes = value.split(":")
    return time(int(hours), int(minutes))


class FreezeSchedule(StrictModel):
    """A weekly window; ``from_time > to_time`` means it ends on the next day."""

    id: str | None = Field(default=None, pattern=SCHEDULE_ID_PATTERN)
    from_time: str
    to_time: str
    weekdays: list[StrictInt] = Field(max_length=7)
    timezone: str | None = None
    policy: FreezePolicy = FreezePolicy.scale_to_zero
    note: Text = Field(default="", max_length=500)

    @field_validator("from_time")
    @classmethod
    def _from_time(cls, value: str) -> str:
        return _check_hhmm(value)

    @field_validator("to_time")
    @classmethod
    def _to_time(cls, value: str, info: ValidationInfo) -> str:
        _check_hhmm(value)
        if value == info.data.get("from_time"):
            raise ValueError(
                f"to_time equals from_time ({value}): a window needs a length; "
                "a from_time after the to_time means an overnight window ending the next day"
            )
        return value

    @field_validator("weekdays")
    @classmethod
    def _weekdays(cls, value: list[int]) -> list[int]:
        if not value:
            raise ValueError("give at least one weekday (1 = Monday ... 7 = Sunday)")
        for day in value:
            if not 1 <= day <= 7:
                raise ValueError(f"weekday {day} is not from 1 (Monday) to 7 (Sunday)")
            if value.count(day) > 1:
                raise ValueError(f"weekday {day} appears more than once")
        return value

    @field_validator("timezone")
    @classmethod
    def _timezone(cls, value: str | None) -> str | None:
        if value is not None:
            load_zone(value)
        return value

    @property
    def overnight(self) -> bool:
        return self.from_time > self.to_time

    def zone(self, default_tz: str) -> ZoneInfo:
        return load_zone(self.timezone or default_tz)


@dataclass(frozen=True)
class Occurrence:
    """One concrete occurrence of a schedule, as UTC instants; ``end`` is exclusive."""

    schedule_id: str | None
    start: datetime
    end: datetime
    policy: FreezePolicy
    # For people only ("Fri 23:00-02:00 Europe/Berlin"); two occurrences are equal without it.
    label: str = field(default="", compare=False)

    def covers(self, instant: datetime) -> bool:
        return self.start <= instant < self.end


def _require_aware(value: datetime, name: str) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware, got {value.isoformat()}")
    return value


def _utc_at(day: date, wall: time, zone: ZoneInfo) -> datetime:
    return datetime.combine(day, wall, tzinfo=zone).astimezone(UTC)


def _occurrence(
    schedule: FreezeSchedule, *, day: date, zone: ZoneInfo, start: datetime, end: datetime
) -> Occurrence:
    label = f"{WEEKDAY_NAMES[day.weekday()]} {schedule.from_time}-{schedule.to_time} {zone.key}"
    return Occurrence(
        schedule_id=schedule.id, start=start, end=end, policy=schedule.policy, label=label
    )


def occurrences(
    schedule: FreezeSchedule, *, start: datetime, end: datetime, default_tz: str
) -> list[Occurrence]:
    """All occurrences of ``schedule`` overlapping ``[start, end)``, sorted by start. (A day's
    end, and its occurrence, are made only for a day that starts before ``end``.)"""
    _require_aware(start, "start")
    _require_aware(end, "end")
    if end <= start:
        return []
    zone = schedule.zone(default_tz)
    from_wall, to_wall = _parse_hhmm(schedule.from_time), _parse_hhmm(schedule.to_time)
    end_offset = _ONE_DAY if schedule.overnight else timedelta(0)
    # Two days of margin: an overnight window, shifted by a DST gap, still reaches ``start``.
    day = start.astimezone(zone).date() - 2 * _ONE_DAY
    last = end.astimezone(zone).date() + _ONE_DAY
    found: list[Occurrence] = []
    while day <= last:
        if day.isoweekday() in schedule.weekdays:
            begins = _utc_at(day, from_wall, zone)
            if begins < end:
                ends = _utc_at(day + end_offset, to_wall, zone)
                if begins < ends and ends > start:
                    found.append(_occurrence(schedule, day=day, zone=zone, start=begins, end=ends))
        day += _ONE_DAY
    return found


def _all_occurrences(
    schedules: Sequence[FreezeSchedule], *, start: datetime, end: datetime, default_tz: str
) -> list[Occurrence]:
    found = [
        occ
        for schedule in schedules
        for occ in occurrences(schedule, start=start, end=end, default_tz=default_tz)
    ]
    return sorted(found, key=lambda occ: (occ.start, occ.end))


def active_windows(
    schedules: Sequence[FreezeSchedule], *, now: datetime, default_tz: str
) -> list[Occurrence]:
    """The occurrences in force at ``now`` (start inclusive, end exclusive), sorted by start."""
    _require_aware(now, "now")
    return _all_occurrences(
        schedules, start=now, end=now + timedelta(microseconds=1), default_tz=default_tz
    )


def freeze_ends_at(
    schedules: Sequence[FreezeSchedule], *, now: datetime, default_tz: str
) -> datetime | None:
    """The first instant >= ``now`` with no window in force; None when none is in force now.

    Overlapping and adjacent windows form one freeze. A chain longer than ``CHAIN_LIMIT`` is
    cut: the end reached by then is returned.
    """
    _require_aware(now, "now")
    limit = now + CHAIN_LIMIT
    known = _all_occurrences(schedules, start=now, end=limit + _ONE_DAY, default_tz=default_tz)
    instant = now
    while True:
        covering = [occ.end for occ in known if occ.covers(instant)]
        if not covering:
            return None if instant == now else instant
        instant = max(covering)
        if instant >= limit:
            return instant


def _utc_text(instant: datetime) -> str:
    return instant.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _window_text(occ: Occurrence) -> str:
    name = f"{occ.schedule_id} " if occ.schedule_id else ""
    return f"{name}({occ.label}, {occ.policy.value})"


@dataclass(frozen=True)
class FreezeState:
    """Whether a pool is frozen at one instant, why, and until when."""

    active: bool
    policy: FreezePolicy | None
    windows: tuple[Occurrence, ...]
    until: datetime | None
    lifted_until: datetime | None

    def reason(self) -> str:
        if self.active and self.until is not None:
            noun = "window" if len(self.windows) == 1 else "windows"
            listed = ", ".join(_window_text(occ) for occ in self.windows)
            return f"frozen by {noun} {listed} until {_utc_text(self.until)}"
        if self.lifted_until is not None:
            return f"not frozen: freeze windows lifted until {_utc_text(self.lifted_until)}"
        return "not frozen: no freeze window is in force"


def _policy_of(windows: Sequence[Occurrence]) -> FreezePolicy:
    if any(occ.policy is FreezePolicy.no_new_tasks for occ in windows):
        return FreezePolicy.no_new_tasks
    return FreezePolicy.scale_to_zero


def _lift_end(unfreeze_until: datetime | None, now: datetime) -> datetime | None:
    if unfreeze_until is None:
        return None
    _require_aware(unfreeze_until, "unfreeze_until")
    return unfreeze_until if unfreeze_until > now else None


def freeze_state(
    schedules: Sequence[FreezeSchedule],
    *,
    now: datetime,
    default_tz: str,
    unfreeze_until: datetime | None,
) -> FreezeState:
    """The state at ``now``; a future ``unfreeze_until`` lifts every window, a past one is moot."""
    _require_aware(now, "now")
    lifted_until = _lift_end(unfreeze_until, now)
    windows = active_windows(schedules, now=now, default_tz=default_tz)
    if lifted_until is not None or not windows:
        return FreezeState(
            active=False, policy=None, windows=(), until=None, lifted_until=lifted_until
        )
    return FreezeState(
        active=True,
        policy=_policy_of(windows),
        windows=tuple(windows),
        until=freeze_ends_at(schedules, now=now, default_tz=default_tz),
        lifted_until=None,
    )


def next_boundary(
    schedules: Sequence[FreezeSchedule],
    *,
    now: datetime,
    default_tz: str,
    unfreeze_until: datetime | None,
) -> datetime | None:
    """The next instant after ``now``, within ``BOUNDARY_HORIZON``, where the state may change.

    While a one-time unfreeze lifts the windows nothing changes before it ends, so window
    boundaries until then are skipped. None when nothing changes within the horizon.
    """
    _require_aware(now, "now")
    horizon = now + BOUNDARY_HORIZON
    lifted_until = _lift_end(unfreeze_until, now)
    after = lifted_until or now
    known = _all_occurrences(schedules, start=now, end=horizon, default_tz=default_tz)
    candidates = [t for occ in known for t in (occ.start, occ.end) if after < t <= horizon]
    if lifted_until is not None and lifted_until <= horizon:
        candidates.append(lifted_until)
    return min(candidates, default=None)


@dataclass(frozen=True)
class FreezeInterval:
    """A span during which windows were (or will be) in force, as UTC instants; ``end`` is
    exclusive. Overlapping and adjacent windows make one interval; its policy is
    ``no_new_tasks`` if any of them has it; ``windows`` names them for people."""

    start: datetime
    end: datetime
    policy: FreezePolicy
    windows: tuple[str, ...]


def _merged(found: Sequence[Occurrence]) -> list[FreezeInterval]:
    merged: list[tuple[datetime, datetime, list[Occurrence]]] = []
    for occ in found:  # sorted by start
        if merged and occ.start <= merged[-1][1]:
            start, end, members = merged[-1]
            merged[-1] = (start, max(end, occ.end), [*members, occ])
        else:
            merged.append((occ.start, occ.end, [occ]))
    return [
        FreezeInterval(
            start=start,
            end=end,
            policy=_policy_of(members),
            windows=tuple(dict.fromkeys(_window_text(occ) for occ in members)),
        )
        for start, end, members in merged
    ]


def _outside(interval: FreezeInterval, lifted: tuple[datetime, datetime]) -> list[FreezeInterval]:
    """The parts of ``interval`` outside the ``lifted`` span."""
    lift_start, lift_end = lifted
    parts = [
        (interval.start, min(interval.end, lift_start)),
        (max(interval.start, lift_end), interval.end),
    ]
    return [replace(interval, start=start, end=end) for start, end in parts if start < end]


def freeze_intervals(
    schedules: Sequence[FreezeSchedule],
    *,
    start: datetime,
    end: datetime,
    default_tz: str,
    lifted: tuple[datetime, datetime] | None = None,
) -> list[FreezeInterval]:
    """When the pool was frozen within ``[start, end)`` by the windows it has now: merged, clipped
    to the range, sorted, without the span a one-time unfreeze lifted them (``lifted``: from
    when it was made until it ends). The same occurrences the controller acts on
    (``occurrences``), so daylight-saving changes are drawn as they were applied."""
    _require_aware(start, "start")
    _require_aware(end, "end")
    found = _all_occurrences(schedules, start=start, end=end, default_tz=default_tz)
    intervals = _merged(found)
    if lifted is not None:
        intervals = [part for interval in intervals for part in _outside(interval, lifted)]
    return [
        replace(interval, start=max(interval.start, start), end=min(interval.end, end))
        for interval in intervals
    ]
