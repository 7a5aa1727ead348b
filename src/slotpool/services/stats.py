"""Counts shown next to each pool (Pods ready/total, slots busy/total, queued tasks)."""

from __future__ import annotations

from collections.abc import Sequence

from slotpool.store.stats import PoolCounts
from slotpool.store.uow import Store

__all__ = ["PoolCounts", "StatsService"]


class StatsService:
    def __init__(self, store: Store) -> None:
        self._store = store

    async def pool_counts(self, pool_ids: Sequence[str]) -> dict[str, PoolCounts]:
        """One query for the whole page; pools without Pods or tasks get zeros."""
        async with self._store.unit_of_work() as uow:
            found = await uow.stats.counts(pool_ids)
        return {pool_id: found.get(pool_id, PoolCounts()) for pool_id in pool_ids}
