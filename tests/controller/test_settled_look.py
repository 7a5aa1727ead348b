"""Where several processes share the database (PostgreSQL), a pass first looks at the pool
reading only and without the pool's lock in the database: a settled pool's pass ends there (it
does not wait for another process holding the lock, and writes nothing); a pass that has
anything to write or do takes the lock and acts as before."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest

from slotpool.domain.tasks import TaskSubmit
from slotpool.services.locks import PoolLocks
from slotpool.store.advisory import AdvisoryLocks
from tests.controller.conftest import World

pytestmark = pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)


@contextlib.asynccontextmanager
async def held_elsewhere(world: World, pool_id: str) -> AsyncIterator[None]:
    """The pool's lock held by another process (its own connection to the database)."""
    other = PoolLocks(AdvisoryLocks(world.settings.database_url, hold_seconds=30))
    try:
        async with other.of(pool_id):
            yield
    finally:
        await other.close()


async def settled_pool(world: World) -> str:
    pool = await world.pool(min_replicas=2, max_replicas=2, slots_per_pod=1)
    controller = world.services.controller.reconciler
    first = await controller.run_pass(pool.pool_id, check_secret=True)
    assert len(first.created) == 2
    await controller.run_pass(pool.pool_id, check_secret=False)  # the Pods booked as listed
    return pool.pool_id


async def test_a_settled_pools_pass_neither_waits_for_the_lock_nor_writes(world: World) -> None:
    pool_id = await settled_pool(world)
    controller = world.services.controller.reconciler
    events = await world.events(pool_id)
    pods = await world.pods(pool_id)

    async with held_elsewhere(world, pool_id):
        report = await asyncio.wait_for(controller.run_pass(pool_id, check_secret=False), timeout=5)
    assert report.decision["actions"] == []
    assert report.created == []
    assert report.decision["capacity_pods"] == 2
    assert await world.events(pool_id) == events
    assert await world.pods(pool_id) == pods
    assert world.runtime.calls["create_agent"] == 2


@pytest.mark.parametrize("change", ["queued", "vanished", "secret due"])
async def test_a_pass_with_something_to_do_waits_for_the_lock_and_does_it(
    world: World, change: str
) -> None:
    pool_id = await settled_pool(world)
    controller = world.services.controller.reconciler
    check_secret = False
    if change == "queued":
        submitted = await world.services.tasks.submit(
            TaskSubmit(pool_id=pool_id, command="true"), by="t"
        )
    elif change == "vanished":
        gone = world.runtime.of(pool_id)[0]
        world.runtime.vanish(gone)
        world.clock.advance(seconds=1)  # listed after the Pod was booked
    else:
        check_secret = True
    reads = world.runtime.calls["read_token"]

    async with held_elsewhere(world, pool_id):
        passing = asyncio.create_task(controller.run_pass(pool_id, check_secret=check_secret))
        await asyncio.sleep(0.5)
        assert not passing.done(), "it waits for the other process's lock"
    report = await asyncio.wait_for(passing, timeout=10)

    if change == "queued":
        task = await world.services.tasks.get(submitted.id)
        assert task.reason, "the queued task says why it waits"
    elif change == "vanished":
        assert (await world.pods(pool_id))[gone].end is not None, "retired as vanished"
        assert len(report.created) == 1, "the vanished Pod is replaced"
    else:
        assert world.runtime.calls["read_token"] == reads + 1, "the Secret was checked"
        assert report.secret == "unchanged"
