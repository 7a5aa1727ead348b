"""Counts shown next to each pool (Pods ready/total, slots busy/total, queued tasks), and every
pool's gauges for ``/metrics``, read from the database at scrape time."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from slotpool import metrics
from slotpool.clock import Clock
from slotpool.domain.pods import SlotState
from slotpool.domain.pools import Pool
from slotpool.domain.scaling import desired_pods
from slotpool.domain.tasks import OPEN, TaskStatus
from slotpool.services.freeze import FreezeService
from slotpool.services.pools import PoolService
from slotpool.store.stats import PoolCensus, PoolCounts
from slotpool.store.uow import Store

__all__ = ["PoolCounts", "StatsService"]
POOLS_PAGE = 500


class StatsService:
    def __init__(
        self, store: Store, pools: PoolService, freeze: FreezeService, clock: Clock
    ) -> None:
        self._store = store
        self._pools = pools
        self._freeze = freeze
        self._clock = clock

    async def pool_counts(self, pool_ids: Sequence[str]) -> dict[str, PoolCounts]:
        """One query for the whole page; pools without Pods or tasks get zeros."""
        async with self._store.reading() as uow:
            found = await uow.stats.counts(pool_ids)
        return {pool_id: found.get(pool_id, PoolCounts()) for pool_id in pool_ids}

    async def pool_gauges(self) -> list[metrics.PoolGauges]:
        """Every pool's gauges: the pools, then their census, in one transaction."""
        pools: list[Pool] = []
        async with self._store.unit_of_work() as uow:
            while True:
                page, total = await uow.pools.list(limit=POOLS_PAGE, offset=len(pools))
                pools += page
                if not page or len(pools) >= total:
                    break
            census = await uow.stats.census()
        metrics.pool_names.note_all((pool.pool_id, pool.name) for pool in pools)
        empty = PoolCensus({}, {}, {}, {})
        return [self._gauges(pool, census.get(pool.pool_id, empty)) for pool in pools]

    def _gauges(self, pool: Pool, census: PoolCensus) -> metrics.PoolGauges:
        tasks = {s.value: census.tasks.get(s, 0) for s in OPEN}
        slots = {s.value: census.slots.get(s, 0) for s in SlotState}
        pods = {state.value: n for state, n in census.pods.items()}
        gauges = metrics.PoolGauges(
            pool=pool.name,
            tasks=tasks,
            slots=slots,
            pods=pods,
            frozen=self._freeze.state(pool, self._clock()).active,
        )
        config = pool.effective_config()
        if config is None:
            return gauges
        current = self._pools.config_hash(pool)
        demand = slots[SlotState.busy] + slots[SlotState.reserved] + tasks[TaskStatus.queued]
        outdated = sum(n for built, n in census.hashes.items() if built != current)
        return replace(
            gauges,
            desired=desired_pods(demand + config.min_idle_slots, config),
            outdated=outdated,
            min_replicas=config.min_replicas,
            max_replicas=config.max_replicas,
        )
