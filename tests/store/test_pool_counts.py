"""The pool list's counts (one grouped statement for a page of pools) agree with the census of
every pool (written independently, for the gauges) on Pods in every state, slots of Pods that
ended or not, and open tasks, on both databases; a pool not asked for, or that does not exist,
is left out."""

from __future__ import annotations

from datetime import UTC, datetime
from itertools import count

from sqlalchemy import create_engine
from sqlalchemy.orm import Session

from slotpool.domain.config import PoolType
from slotpool.domain.pods import PodState, SlotState
from slotpool.domain.tasks import TaskStatus
from slotpool.store.db import sync_url
from slotpool.store.models import PodRow, SlotRow, TaskRow
from slotpool.store.pools import NewPool
from slotpool.store.stats import PoolCensus, PoolCounts
from slotpool.store.uow import Store

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
POOLS = [f"pool-000000000000000{n}" for n in range(4)]


def counts_of(census: PoolCensus) -> PoolCounts:
    return PoolCounts(
        pods_ready=census.pods.get(PodState.ready, 0),
        pods_total=sum(census.pods.values()),
        slots_busy=census.slots.get(SlotState.busy, 0),
        slots_reserved=census.slots.get(SlotState.reserved, 0),
        slots_total=sum(census.slots.values()),
        queued_tasks=census.tasks.get(TaskStatus.queued, 0),
    )


async def test_counts_agree_with_the_census(store: Store) -> None:
    ids = count(1)
    async with store.unit_of_work() as uow:
        for pool_id in POOLS:
            await uow.pools.add(NewPool(pool_id, pool_id[-2:], "", PoolType.static, None, "t", NOW))
    engine = create_engine(sync_url(store.url))
    with Session(engine) as session, session.begin():
        # Pool n gets n Pods in each state, each Pod a slot in each state, and n tasks in
        # each status: every count differs from pool to pool.
        for n, pool_id in enumerate(POOLS):
            for state in PodState:
                for _ in range(n):
                    pod = PodRow(
                        pool_id=pool_id,
                        name=f"pod-{next(ids)}",
                        state=state.value,
                        slots=len(SlotState),
                        reason="",
                        created_at=NOW,
                        updated_at=NOW,
                    )
                    session.add(pod)
                    session.flush()
                    for index, slot in enumerate(SlotState):
                        session.add(
                            SlotRow(pod_id=pod.id, slot_index=index, state=slot.value, since=NOW)
                        )
            for status in TaskStatus:
                for _ in range(n):
                    session.add(
                        TaskRow(
                            id=f"task-{next(ids)}",
                            pool_id=pool_id,
                            name="t",
                            status=status.value,
                            env={},
                            labels={},
                            steps=[],
                            results=[],
                            current_step=0,
                            cancel_requested=False,
                            reason="",
                            created_by="t",
                            created_at=NOW,
                            updated_at=NOW,
                        )
                    )
    engine.dispose()
    async with store.unit_of_work() as uow:
        asked = [*POOLS[1:], "pool-doesnotexist00"]
        found = await uow.stats.counts(asked)
        census = await uow.stats.census()
    assert set(found) == set(POOLS[1:])
    for pool_id in POOLS[1:]:
        assert found[pool_id] == counts_of(census[pool_id])
    assert found[POOLS[2]] == PoolCounts(
        pods_ready=2,
        pods_total=2 * len(PodState),
        slots_busy=2 * 4,  # pending, starting, ready and draining Pods: not ended
        slots_reserved=2 * 4,
        slots_total=2 * 4 * len(SlotState),
        queued_tasks=2,
    )
