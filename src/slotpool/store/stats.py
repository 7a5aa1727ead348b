"""Per-pool counts for the pool list and the pool page: Pods, slots and queued tasks; and the
same for every pool at once for ``/metrics`` (``tally``).

One statement per page of pools (correlated scalar subqueries over indexed columns), never one
query per pool.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, ScalarSelect, Select, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from slotpool.domain.pods import PodState, SlotState
from slotpool.domain.tasks import OPEN, TaskStatus
from slotpool.store.models import AgentPoolRow, PodRow, SlotRow, TaskRow

ENDED = (PodState.failed.value, PodState.deleted.value, PodState.terminating.value)


@dataclass(frozen=True)
class PoolCounts:
    pods_ready: int = 0
    pods_total: int = 0
    slots_busy: int = 0
    slots_reserved: int = 0
    slots_total: int = 0
    queued_tasks: int = 0


class PoolStatsRepository:
    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def counts(self, pool_ids: Sequence[str]) -> dict[str, PoolCounts]:
        """Counts for these pools; a pool that does not exist is left out."""
        if not pool_ids:
            return {}
        pool = AgentPoolRow.pool_id

        def pods(*where: ColumnElement[bool]) -> ScalarSelect[int]:
            return (
                select(func.count())
                .select_from(PodRow)
                .where(PodRow.pool_id == pool, *where)
                .scalar_subquery()
            )

        def slots(*where: ColumnElement[bool]) -> ScalarSelect[int]:
            # Capacity: the slots of Pods that can still run something.
            return (
                select(func.count())
                .select_from(SlotRow)
                .join(PodRow, PodRow.id == SlotRow.pod_id)
                .where(PodRow.pool_id == pool, PodRow.state.not_in(ENDED), *where)
                .scalar_subquery()
            )

        queued = (
            select(func.count())
            .select_from(TaskRow)
            .where(TaskRow.pool_id == pool, TaskRow.status == TaskStatus.queued.value)
            .scalar_subquery()
        )
        query = select(
            pool,
            pods(PodRow.state == PodState.ready.value),
            pods(),
            slots(SlotRow.state == SlotState.busy.value),
            slots(SlotRow.state == SlotState.reserved.value),
            slots(),
            queued,
        ).where(pool.in_(list(pool_ids)))
        rows = await self._session.execute(query)
        return {row[0]: PoolCounts(*(int(value or 0) for value in row[1:])) for row in rows.all()}

    async def tally(self) -> PoolTally:
        return await _tally(self._session)


@dataclass(frozen=True)
class PoolTally:
    """Every pool's open tasks by status, live slots by state, Pods by state and by config
    hash (for the scrape's gauges: a few grouped queries, however many pools there are)."""

    tasks: dict[tuple[str, str], int]  # (pool id, status) -> tasks
    slots: dict[tuple[str, str], int]  # (pool id, state) -> slots of Pods not ended
    pods: dict[tuple[str, str], int]  # (pool id, state) -> Pods
    hashes: dict[tuple[str, str | None], int]  # (pool id, config hash) -> Pods not ended


async def _tally(session: AsyncSession) -> PoolTally:
    async def grouped(query: Select[*tuple[Any, ...]]) -> dict[Any, int]:
        return {tuple(row[:-1]): int(row[-1]) for row in (await session.execute(query)).all()}

    live = PodRow.state.not_in(ENDED)
    return PoolTally(
        tasks=await grouped(
            select(TaskRow.pool_id, TaskRow.status, func.count())
            .where(TaskRow.status.in_([s.value for s in OPEN]))
            .group_by(TaskRow.pool_id, TaskRow.status)
        ),
        slots=await grouped(
            select(PodRow.pool_id, SlotRow.state, func.count())
            .join(PodRow, PodRow.id == SlotRow.pod_id)
            .where(live)
            .group_by(PodRow.pool_id, SlotRow.state)
        ),
        pods=await grouped(
            select(PodRow.pool_id, PodRow.state, func.count()).group_by(
                PodRow.pool_id, PodRow.state
            )
        ),
        hashes=await grouped(
            select(PodRow.pool_id, PodRow.config_hash, func.count())
            .where(live)
            .group_by(PodRow.pool_id, PodRow.config_hash)
        ),
    )
