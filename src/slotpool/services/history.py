"""A pool's history: the sampler that records every pool's slots, queue and Pods on the sampling
grid, and the use case that reads one pool over a range (the chart's points, the controller's
scaling decisions, the freeze intervals).

The sampler reads all pools in one statement (``PoolStatsRepository.census``) and writes one
batched INSERT per round, and only the pools whose values changed since it last wrote them, or
that it last wrote ``REWRITE_EVERY`` ago: an idle pool costs a row every few minutes, not every
interval. Several servers on one database sample the same grid instants; the table keeps each
(pool, instant) once.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from slotpool.clock import Clock
from slotpool.domain.errors import Issue
from slotpool.domain.events import PoolEvent
from slotpool.domain.freeze import FreezeInterval, freeze_intervals
from slotpool.domain.history import (
    REWRITE_EVERY,
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
from slotpool.domain.pods import PodState, SlotState
from slotpool.domain.pools import Pool
from slotpool.domain.scaling import DECISION_ACTIONS
from slotpool.domain.tasks import TaskStatus
from slotpool.services.errors import Invalid
from slotpool.services.pools import require_pool
from slotpool.settings import Settings
from slotpool.store.stats import PoolCensus
from slotpool.store.uow import Store

DEFAULT_SPAN = timedelta(hours=1)
MAX_SPAN = timedelta(days=31)
# The most samples one answer reads: a range is at most this many sampling intervals long.
MAX_SAMPLES = 50_000
# A pool keeps at most 1000 events (the controller prunes them), so this never cuts a range.
MAX_DECISIONS = 1000

# What tells the desired Pods of a pool: the controller's last decision (None: none was made).
DesiredPods = Callable[[str], int | None]


def load_of(census: PoolCensus, desired: int | None) -> PoolLoad:
    slots, pods, tasks = census.slots, census.pods, census.tasks
    return PoolLoad(
        slots_busy=slots.get(SlotState.busy, 0),
        slots_reserved=slots.get(SlotState.reserved, 0),
        slots_idle=slots.get(SlotState.idle, 0),
        tasks_queued=tasks.get(TaskStatus.queued, 0),
        tasks_awaiting_approval=tasks.get(TaskStatus.awaiting_approval, 0),
        pods_pending=pods.get(PodState.pending, 0),
        pods_starting=pods.get(PodState.starting, 0),
        pods_ready=pods.get(PodState.ready, 0),
        pods_stopping=pods.get(PodState.draining, 0) + pods.get(PodState.terminating, 0),
        pods_desired=desired,
    )


class HistorySampler:
    def __init__(self, *, store: Store, interval: timedelta, desired: DesiredPods) -> None:
        self._store = store
        self._interval = interval
        self._desired = desired
        self._written: dict[str, PoolSample] = {}  # what this process last wrote, per pool
        self._sampled_at: datetime | None = None

    async def sample(self, now: datetime) -> int:
        """Sample every pool at the grid instant of ``now``, once per instant (a call within the
        same interval does nothing); returns how many samples were written."""
        at = sample_time(now, self._interval)
        if at == self._sampled_at:
            return 0
        self._sampled_at = at  # a failed round waits for the next instant
        async with self._store.unit_of_work() as uow:
            census = await uow.stats.census()
            samples = [
                PoolSample(pool_id, at, load_of(counts, self._desired(pool_id)))
                for pool_id, counts in census.items()
            ]
            changed = [s for s in samples if self._worth_writing(s)]
            await uow.history.add(changed)
        written = {p: self._written[p] for p in census if p in self._written}  # pools gone: out
        written.update((s.pool_id, s) for s in changed)
        self._written = written
        return len(changed)

    def _worth_writing(self, sample: PoolSample) -> bool:
        last = self._written.get(sample.pool_id)
        return last is None or last.load != sample.load or sample.at - last.at >= REWRITE_EVERY


@dataclass(frozen=True)
class PoolHistory:
    """One pool over ``[since, until)``: a point every ``step`` (none after the reading's now),
    the controller's decisions, and the freeze intervals (clipped to the range)."""

    pool_id: str
    since: datetime
    until: datetime
    step: timedelta
    interval: timedelta  # the sampling interval (0: this server does not sample)
    max_span: timedelta
    points: list[Point]
    decisions: list[PoolEvent]
    freeze: list[FreezeInterval]


@dataclass(frozen=True)
class HistoryQuery:
    """What a caller asked for: ``since`` and ``until``, or a ``span`` ending at ``until``."""

    since: datetime | None = None
    until: datetime | None = None
    span: str | None = None


class HistoryService:
    def __init__(self, store: Store, settings: Settings, clock: Clock) -> None:
        self._store = store
        self._interval = timedelta(seconds=settings.history_interval_seconds)
        self._default_tz = settings.default_timezone
        self._clock = clock

    @property
    def max_span(self) -> timedelta:
        """The longest range one answer covers: ``MAX_SPAN``, and no more sampling intervals
        than ``MAX_SAMPLES``."""
        if not self._interval:
            return MAX_SPAN
        return min(MAX_SPAN, MAX_SAMPLES * self._interval)

    def window(self, query: HistoryQuery, now: datetime) -> tuple[datetime, datetime]:
        """The range asked for, checked: ``Invalid`` naming the query field and what is valid."""
        if query.span is not None and query.since is not None:
            raise Invalid(
                "invalid request",
                [
                    Issue(
                        "query.range",
                        "give either range or since, not both",
                        hint="range=1h is the last hour up to until (default now); "
                        "since=...&until=... a range of your own",
                    )
                ],
            )
        until = query.until or now
        span = self._span(query.span) if query.span is not None else None
        since = query.since or until - (span or DEFAULT_SPAN)
        if since >= until:
            field = "query.until" if query.until is not None else "query.since"
            raise Invalid(
                "invalid request",
                [
                    Issue(
                        field,
                        f"since ({since.isoformat()}) must be before until ({until.isoformat()})",
                    )
                ],
            )
        if until - since > self.max_span:
            field = "query.range" if query.span is not None else "query.since"
            raise Invalid(
                "invalid request",
                [
                    Issue(
                        field,
                        f"the range is {span_text(until - since)}; "
                        f"it may be at most {span_text(self.max_span)}",
                        hint=self._limit_hint(),
                    )
                ],
            )
        return since, until

    def _span(self, text: str) -> timedelta:
        try:
            return parse_span(text)
        except ValueError as exc:
            raise Invalid(
                "invalid request",
                [Issue("query.range", str(exc), hint=f"at most {span_text(self.max_span)}")],
            ) from None

    def _limit_hint(self) -> str:
        samples = (
            f"{MAX_SAMPLES:,} sampling intervals of {int(self._interval.total_seconds())} s and "
            if self._interval
            else ""
        )
        return f"a range covers at most {samples}{span_text(MAX_SPAN)}; give a shorter one"

    async def read(self, pool_id: str, query: HistoryQuery) -> PoolHistory:
        now = self._clock()
        since, until = self.window(query, now)
        step = step_for(until - since, self._interval)
        async with self._store.reading() as uow:
            pool = await require_pool(uow, pool_id)
            samples = await uow.history.between(
                pool_id, since=since, until=until, limit=MAX_SAMPLES
            )
            decisions = await uow.events.between(
                pool_id, since=since, until=until, actions=DECISION_ACTIONS, limit=MAX_DECISIONS
            )
        points = resample(
            samples,
            since=since,
            until=min(until, now),
            step=step,
            stale=stale_after(self._interval),
        )
        return PoolHistory(
            pool_id=pool_id,
            since=since,
            until=until,
            step=step,
            interval=self._interval,
            max_span=self.max_span,
            points=points,
            decisions=decisions,
            freeze=self._freeze(pool, since, until),
        )

    def _freeze(self, pool: Pool, since: datetime, until: datetime) -> list[FreezeInterval]:
        unfreeze = pool.unfreeze
        return freeze_intervals(
            pool.freeze_schedules,
            start=since,
            end=until,
            default_tz=self._default_tz,
            lifted=(unfreeze.at, unfreeze.until) if unfreeze is not None else None,
        )
