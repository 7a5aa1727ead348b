"""What runs in the background (``Orchestration``), driven one step at a time: a round of the
pool listing (``run_once``), a worker's pass (``pass_once``), a watch (``watch_once``) and the
orphan sweep, with the monotonic clock moved by the test instead of waited for."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
from prometheus_client import REGISTRY

from slotpool.controller.orchestration import LISTING_SECONDS, Coalesce, Orchestration, WatchEnd
from slotpool.domain.config import PoolType, parse_config
from slotpool.domain.signals import Signal
from slotpool.domain.tasks import TaskSubmit
from slotpool.runtime.base import RuntimeRegistry
from slotpool.services.notify import Notifier
from slotpool.services.runtimes import PoolRuntimes
from tests.controller.conftest import IMAGE, World
from tests.support.fake_runtime import WatchingFakeRuntime

RESYNC = 5.0


@dataclass
class Monotonic:
    now: float = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Loops:
    orchestration: Orchestration
    monotonic: Monotonic
    notifier: Notifier
    runtime: WatchingFakeRuntime


@pytest.fixture
async def loops(world: World) -> AsyncIterator[Loops]:
    monotonic, notifier = Monotonic(), Notifier()
    assert isinstance(world.runtime, WatchingFakeRuntime)
    orchestration = Orchestration(
        reconciler=world.services.controller.reconciler,
        pools=world.services.pools,
        runtimes=PoolRuntimes(RuntimeRegistry({PoolType.k8s: world.runtime}), world.services.pools),
        notifier=notifier,
        clock=world.clock,
        no_pods=world.services.no_pods,
        monotonic=monotonic,
    )
    try:
        yield Loops(orchestration, monotonic, notifier, world.runtime)
    finally:
        await orchestration.stop()


async def test_a_round_starts_a_worker_per_pool_to_keep_and_a_watch_per_namespace(
    world: World, loops: Loops
) -> None:
    kept = await world.pool("kept", min_replicas=0)
    elsewhere = await world.pool("elsewhere", min_replicas=0, namespace="team-b")
    await world.pool("unconfigured")
    await world.pool("static", pool_type=PoolType.static, min_replicas=0)
    await world.pool("local", pool_type=PoolType.local, min_replicas=0)  # no local runtime

    wait = await loops.orchestration.run_once(RESYNC)

    assert wait == LISTING_SECONDS  # the next listing; the resync (5 s) is the workers'
    assert set(loops.orchestration.workers) == {kept.pool_id, elsewhere.pool_id}
    assert set(loops.orchestration.watchers) == {("k8s", "agents"), ("k8s", "team-b")}
    await loops.orchestration.stop()
    assert loops.orchestration.workers == {}
    assert loops.orchestration.watchers == {}


async def test_the_listing_says_why_pools_it_keeps_no_worker_for_get_no_pods(
    world: World, loops: Loops
) -> None:
    """Pools made without the API's word (another server process, or before a restart): the
    listing records why once, and puts it on their queued tasks."""
    local = await world.pool("local", pool_type=PoolType.local, min_replicas=0)
    bare = await world.pool("bare")
    queued = [
        await world.services.tasks.submit(TaskSubmit(pool_id=p.pool_id, command="true"), by="t")
        for p in (local, bare)
    ]
    assert [t.reason for t in queued] == ["", ""]

    for _ in range(2):
        loops.monotonic.now += LISTING_SECONDS
        await loops.orchestration.run_once(RESYNC)

    assert await world.events(local.pool_id) == [("hold", "no_pods", "held")]
    assert await world.events(bare.pool_id) == [("hold", "no_pods", "held")]
    reasons = [(await world.services.tasks.get(t.id)).reason for t in queued]
    assert reasons[0] == "waiting: no Pod can be created: this server runs no agents of local pools"
    assert reasons[1].startswith("waiting: no Pod can be created: the pool has no configuration")
    assert loops.orchestration.workers == {}


async def test_a_deleted_pool_loses_its_worker_and_watch_at_the_next_listing(
    world: World, loops: Loops
) -> None:
    pool = await world.pool("going", min_replicas=0, namespace="team-c")
    await loops.orchestration.run_once(RESYNC)
    worker = loops.orchestration.workers[pool.pool_id]
    await world.services.pools.delete(pool.pool_id, by="t")

    await loops.orchestration.run_once(RESYNC)  # not due: the pools are not listed again
    assert pool.pool_id in loops.orchestration.workers

    loops.monotonic.now += LISTING_SECONDS
    await loops.orchestration.run_once(RESYNC)
    assert loops.orchestration.workers == {}
    assert loops.orchestration.watchers == {}
    # The cancellation lands once the worker's pending await (a query, say) gives way.
    await asyncio.wait([worker], timeout=10)
    assert worker.cancelled() or worker.done()


async def test_a_pool_poked_before_it_was_seen_is_read_alone_at_once(
    world: World, loops: Loops
) -> None:
    await loops.orchestration.run_once(RESYNC)  # the listing: no pools yet
    pool = await world.pool("new", min_replicas=0)
    loops.notifier.wake(Signal.pool(pool.pool_id))  # as a committed change signals it

    await loops.orchestration.run_once(RESYNC)

    assert set(loops.orchestration.workers) == {pool.pool_id}
    assert loops.runtime.calls["all_pods"] == 1  # only the first round's orphan sweep


async def test_a_pool_seen_without_a_config_is_read_again_only_when_its_config_changed(
    world: World, loops: Loops
) -> None:
    pool = await world.pool("later")
    await loops.orchestration.run_once(RESYNC)  # seen: nothing to keep
    config = parse_config({"image": IMAGE, "min_replicas": 0}, pool_type=PoolType.k8s)
    # Saved behind the controller's back, as another server process would.
    await world.services.pools.save_config(pool.pool_id, config, by="t", expected_revision=None)
    loops.orchestration.poke(pool.pool_id)  # a plain wake-up: seen and not kept, not read
    await loops.orchestration.run_once(RESYNC)
    assert pool.pool_id not in loops.orchestration.workers

    loops.orchestration.poke(pool.pool_id, reread=True)  # as a config save does
    await loops.orchestration.run_once(RESYNC)
    assert pool.pool_id in loops.orchestration.workers


async def test_a_workers_pass_says_when_the_next_one_is_due(world: World, loops: Loops) -> None:
    pool = await world.pool("timed", min_replicas=1, pending_timeout_seconds=600)
    # The new Pod's pending timeout is 600 s away: the resync comes first, or the timeout does.
    assert await loops.orchestration.pass_once(pool.pool_id, 60.0) == 60.0
    await world.services.controller.settle(pool.pool_id)  # the pass handed its creation over
    assert await loops.orchestration.pass_once(pool.pool_id, 3600.0) == 600.0
    world.clock.advance(seconds=599.99)
    assert await loops.orchestration.pass_once(pool.pool_id, 3600.0) == 0.05  # never spins
    unconfigured = await world.pool("bare")
    assert await loops.orchestration.pass_once(unconfigured.pool_id, 60.0) == 60.0  # logged
    await world.services.pools.delete(pool.pool_id, by="t")
    assert await loops.orchestration.pass_once(pool.pool_id, 60.0) is None  # the pool is gone


async def test_a_watch_wakes_the_pools_whose_pods_changed(world: World, loops: Loops) -> None:
    await loops.orchestration.run_once(RESYNC)
    pool = await world.pool("watched", min_replicas=0)
    loops.runtime.changes = [pool.pool_id, pool.pool_id]

    end = await loops.orchestration.watch_once(loops.runtime, "agents")

    assert end == WatchEnd(heard=2)
    await loops.orchestration.run_once(RESYNC)  # a Pod of a pool not seen yet: read at once
    assert set(loops.orchestration.workers) == {pool.pool_id}


async def test_a_failed_watch_says_why_and_what_it_heard(loops: Loops) -> None:
    loops.runtime.changes = ["pool-0123456789abcdef"]
    loops.runtime.watch_error = RuntimeError("410: too old resource version")
    end = await loops.orchestration.watch_once(loops.runtime, "agents")
    assert end == WatchEnd(heard=1, error="410: too old resource version")


async def test_the_orphan_sweep_deletes_pods_of_pools_that_no_longer_exist(
    world: World, loops: Loops
) -> None:
    pool = await world.pool("mine", min_replicas=0)
    loops.runtime.add(pool.pool_id, "ours")
    loops.runtime.add("pool-gone000000000000", "orphan")
    loops.runtime.add("pool-gone000000000000", "leaving", deleting=True)

    assert await loops.orchestration.sweep_orphans() == ["orphan"]
    assert sorted(loops.runtime.pods_by_name) == ["leaving", "ours"]


async def test_run_forever_ends_what_it_started(world: World, loops: Loops) -> None:
    pool = await world.pool("kept", min_replicas=0)
    running = asyncio.create_task(loops.orchestration.run_forever(RESYNC))
    for _ in range(200):
        if pool.pool_id in loops.orchestration.workers:
            break
        await asyncio.sleep(0.01)
    worker = loops.orchestration.workers[pool.pool_id]
    running.cancel()
    with pytest.raises(asyncio.CancelledError):
        await running
    assert worker.done()
    assert loops.orchestration.workers == {}


def passes_so_far() -> float:
    return REGISTRY.get_sample_value("slotpool_controller_pass_seconds_count") or 0.0


async def test_a_storm_of_wake_ups_costs_a_few_passes_not_one_each(
    world: World, loops: Loops
) -> None:
    pool = await world.pool("stormy", min_replicas=0)
    await loops.orchestration.run_once(RESYNC)  # its worker starts, with a first pass
    await asyncio.sleep(0.2)
    before = passes_so_far()

    # 400 wake-ups a few milliseconds apart (submissions, watch events): each one alone would be
    # worth a pass, and a pass takes about as long as the gap between two of them.
    for _ in range(400):
        loops.orchestration.poke(pool.pool_id)
        await asyncio.sleep(0.003)
    await asyncio.sleep(Coalesce().most * 3)  # the last pass is done

    passes = passes_so_far() - before
    assert 1 <= passes <= 25, f"{passes:.0f} passes for 400 wake-ups"
