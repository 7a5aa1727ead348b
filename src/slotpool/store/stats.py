"""Per-pool counts for the pool list and the pool page: Pods, slots and queued tasks.

One statement per page of pools (correlated scalar subqueries over indexed columns), never one
query per pool.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import ColumnElement, ScalarSelect, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from slotpool.domain.pods import PodState, SlotState
from slotpool.domain.tasks import TaskStatus
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
