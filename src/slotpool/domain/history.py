"""A pool over time: what each sample of its slots, queue and Pods holds, and the points a chart
draws of them. Pure: no clock, no I/O.

Samples are stored when a pool's values change, and at least every ``REWRITE_EVERY`` while they
do not, so a sample holds until the next one; one older than ``stale_after`` holds no longer (the
server was not sampling then, and the chart shows a gap rather than a flat line). ``resample``
turns them into evenly spaced points, each the largest value of every series in force during its
step (the slots as the busiest instant's): the peaks an operator sizing ``max_replicas`` looks
for survive any zoom.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, fields
from datetime import UTC, datetime, timedelta

# The sampler writes an unchanged pool again this often: the longest a sample holds.
REWRITE_EVERY = timedelta(minutes=5)
# A chart gets at most this many steps (plus the ones its ends fall in).
MAX_POINTS = 1000

_SPAN = re.compile(r"([1-9][0-9]{0,5})([mhd])")
_UNIT = {"m": timedelta(minutes=1), "h": timedelta(hours=1), "d": timedelta(days=1)}
SPAN_EXAMPLES = "15m, 1h, 6h, 24h or 7d"


@dataclass(frozen=True)
class PoolLoad:
    """One pool's values at one instant. Slots are those of Pods that have not ended; Pods
    ``stopping`` are draining or terminating; ``pods_desired`` is what the controller's last
    pass decided (None where no controller runs the pool, e.g. a static one)."""

    slots_busy: int = 0
    slots_reserved: int = 0
    slots_idle: int = 0
    tasks_queued: int = 0
    tasks_awaiting_approval: int = 0
    pods_pending: int = 0
    pods_starting: int = 0
    pods_ready: int = 0
    pods_stopping: int = 0
    pods_desired: int | None = None


LOAD_FIELDS = tuple(f.name for f in fields(PoolLoad))


@dataclass(frozen=True)
class PoolSample:
    pool_id: str
    at: datetime
    load: PoolLoad


@dataclass(frozen=True)
class Point:
    """One step of a chart from ``at``; ``load`` None: no sample was in force (a gap)."""

    at: datetime
    load: PoolLoad | None


def stale_after(interval: timedelta) -> timedelta:
    """How long a sample holds at most: the rewrite period and two sampling intervals of slack."""
    return REWRITE_EVERY + 2 * interval


def sample_time(now: datetime, interval: timedelta) -> datetime:
    """``now`` floored to the sampling grid (whole intervals since the epoch): servers sampling
    the same database write the same instant, which the table keeps once."""
    seconds = max(int(interval.total_seconds()), 1)
    stamp = math.floor(now.timestamp() / seconds) * seconds
    return datetime.fromtimestamp(stamp, UTC)


def parse_span(text: str) -> timedelta:
    """``15m``, ``1h``, ``7d``...: a whole number of minutes, hours or days; ValueError else."""
    found = _SPAN.fullmatch(text)
    if found is None:
        raise ValueError(
            f"{text!r} is not a duration: give a whole number of minutes, hours or days "
            f"such as {SPAN_EXAMPLES}"
        )
    return int(found.group(1)) * _UNIT[found.group(2)]


def span_text(span: timedelta) -> str:
    """A duration for messages, to the minute (rounded down): ``7d``, ``13h 53m``, ``0m``."""
    minutes = int(span.total_seconds() // 60)
    parts = [(minutes // 1440, "d"), (minutes // 60 % 24, "h"), (minutes % 60, "m")]
    return " ".join(f"{n}{unit}" for n, unit in parts if n) or "0m"


def step_for(span: timedelta, interval: timedelta) -> timedelta:
    """The chart's step over ``span``: the sampling interval, or longer so that the span has at
    most ``MAX_POINTS`` steps; whole seconds."""
    seconds = max(math.ceil(span.total_seconds() / MAX_POINTS), int(interval.total_seconds()), 1)
    return timedelta(seconds=seconds)


SLOT_FIELDS = ("slots_busy", "slots_reserved", "slots_idle")


def _peak(loads: Sequence[PoolLoad]) -> PoolLoad:
    """Each series' largest value, but the slots as one instant (the busiest: most busy and
    reserved, the latest on a tie), so that busy, reserved and idle stack up to a capacity the
    pool had, not to the sum of peaks of different moments."""
    values: dict[str, int | None] = {}
    for name in LOAD_FIELDS:
        present = [v for load in loads if (v := getattr(load, name)) is not None]
        values[name] = max(present) if present else None
    busiest = max(reversed(loads), key=lambda load: load.slots_busy + load.slots_reserved)
    values.update({name: getattr(busiest, name) for name in SLOT_FIELDS})
    return PoolLoad(**values)  # type: ignore[arg-type]


def resample(
    samples: Sequence[PoolSample],
    *,
    since: datetime,
    until: datetime,
    step: timedelta,
    stale: timedelta,
) -> list[Point]:
    """Points every ``step`` covering ``[since, until]`` (the last one's step holds ``until``), on
    a grid of whole steps since the epoch (so a chart polled again keeps its points in place).
    A point holds, per series, the largest value in force during its step: the sample in force
    at its start (the latest one at or before it, if not older than ``stale``) and every sample
    taken within it. ``samples``: sorted by time; those before ``since`` only tell what was in
    force when it began."""
    seconds = int(step.total_seconds())
    if seconds < 1:
        raise ValueError("a step of at least one second")
    start = math.floor(since.timestamp() / seconds) * seconds
    points: list[Point] = []
    index = 0
    current: PoolSample | None = None
    bucket = datetime.fromtimestamp(start, UTC)
    while bucket <= until:
        end = bucket + step
        while index < len(samples) and samples[index].at <= bucket:
            current = samples[index]
            index += 1
        in_force = [current.load] if current and bucket < current.at + stale else []
        while index < len(samples) and samples[index].at < end:
            current = samples[index]
            in_force.append(current.load)
            index += 1
        points.append(Point(bucket, _peak(in_force) if in_force else None))
        bucket = end
    return points
