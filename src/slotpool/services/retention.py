"""Retention: finished tasks, their logs, pool events and pool history samples are deleted once
older than the settings say (``SLOTPOOL_RETAIN_TASKS_DAYS``, ``_LOGS_DAYS``, ``_EVENTS_DAYS``,
``_HISTORY_DAYS``; 0 keeps them forever). The sweeper runs it every ``RETENTION_EVERY``; each
batch is its own short transaction, so a large backlog never holds the database for long.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

import structlog

from slotpool.settings import Settings
from slotpool.store.uow import Store, UnitOfWork

log = structlog.get_logger(__name__)
BATCH = 500
RETENTION_EVERY = timedelta(minutes=10)


@dataclass(frozen=True)
class RetentionPolicy:
    """How many days each kind of record is kept (0: forever)."""

    tasks_days: int
    logs_days: int
    events_days: int
    history_days: int

    @classmethod
    def of(cls, settings: Settings) -> RetentionPolicy:
        return cls(
            tasks_days=settings.retain_tasks_days,
            logs_days=settings.retain_logs_days,
            events_days=settings.retain_events_days,
            history_days=settings.retain_history_days,
        )


@dataclass(frozen=True)
class Pruned:
    tasks: int = 0
    log_chunks: int = 0
    events: int = 0
    samples: int = 0


def _cutoff(now: datetime, days: int) -> datetime | None:
    return None if days <= 0 else now - timedelta(days=days)


class Retention:
    def __init__(self, *, store: Store, policy: RetentionPolicy, batch: int = BATCH) -> None:
        self._store = store
        self._policy = policy
        self._batch = batch

    async def prune(self, now: datetime) -> Pruned:
        """Delete everything older than the policy allows at ``now``, batch after batch."""
        policy = self._policy
        pruned = Pruned(
            tasks=await self._drain(
                _cutoff(now, policy.tasks_days),
                lambda uow, before: uow.retention.delete_tasks(
                    finished_before=before, limit=self._batch
                ),
            ),
            log_chunks=await self._drain(
                _cutoff(now, policy.logs_days),
                lambda uow, before: uow.retention.delete_logs(
                    finished_before=before, limit=self._batch
                ),
            ),
            events=await self._drain(
                _cutoff(now, policy.events_days),
                lambda uow, before: uow.retention.delete_events(before=before, limit=self._batch),
            ),
            samples=await self._drain(
                _cutoff(now, policy.history_days),
                lambda uow, before: uow.retention.delete_samples(before=before, limit=self._batch),
            ),
        )
        if pruned != Pruned():
            log.info(
                "retention: old records deleted",
                tasks=pruned.tasks,
                log_chunks=pruned.log_chunks,
                events=pruned.events,
                samples=pruned.samples,
            )
        return pruned

    async def _drain(
        self,
        before: datetime | None,
        batch: Callable[[UnitOfWork, datetime], Awaitable[int]],
    ) -> int:
        """Run ``batch`` in its own transaction until a batch deletes less than a full one."""
        if before is None:
            return 0
        total = 0
        while True:
            async with self._store.unit_of_work() as uow:
                deleted = await batch(uow, before)
            total += deleted
            if deleted < self._batch:
                return total
