"""The creations a worker's pass hands over (``controller/creations.py``): the pass returns before
they are done, the next passes count them as coming (no Pod twice, never past max_replicas), a
failure is reported and no longer counted, and stopping the controller or deleting the pool
while they are in flight leaves nothing unrecorded or behind."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from prometheus_client import REGISTRY

from slotpool.controller.orchestration import Coalesce, Orchestration
from slotpool.domain.agent_spec import AgentSpec
from slotpool.domain.config import PoolType
from slotpool.domain.pods import PodState
from slotpool.domain.tasks import TaskSubmit
from slotpool.runtime.base import RuntimePod, RuntimeRegistry
from slotpool.services.notify import Notifier
from slotpool.services.runtimes import PoolRuntimes
from tests.controller.conftest import World, world_of
from tests.support.fake_runtime import WatchingFakeRuntime


class GatedRuntime(WatchingFakeRuntime):
    """Once ``held``, each ``create_agent`` waits until the test lets one through (``let``)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.gate: asyncio.Semaphore | None = None
        self.waiting = 0

    def hold(self) -> GatedRuntime:
        self.gate = asyncio.Semaphore(0)
        return self

    def let(self, count: int) -> None:
        assert self.gate is not None
        for _ in range(count):
            self.gate.release()

    async def create_agent(self, spec: AgentSpec) -> RuntimePod:
        if self.gate is not None:
            self.waiting += 1
            try:
                await self.gate.acquire()
            finally:
                self.waiting -= 1
        return await super().create_agent(spec)


@pytest.fixture
async def world(database_url: str) -> AsyncIterator[World]:
    """``tests/controller/conftest.py``'s world, with a ``GatedRuntime``."""
    async with world_of(database_url, GatedRuntime) as made:
        yield made


@pytest.fixture
def gated(world: World) -> GatedRuntime:
    """The world's runtime (the one its services use), its creations held at the gate."""
    assert isinstance(world.runtime, GatedRuntime)
    return world.runtime.hold()


async def queue(world: World, pool_id: str, count: int) -> list[str]:
    body = TaskSubmit(pool_id=pool_id, command="true")
    return [(await world.services.tasks.submit(body, by="t")).id for _ in range(count)]


async def until(check: Any, seconds: float = 5.0) -> None:
    for _ in range(int(seconds / 0.01)):
        if check():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("timed out")


async def test_a_workers_pass_returns_before_its_creations_and_the_next_counts_them(
    world: World, gated: GatedRuntime
) -> None:
    pool = await world.pool(min_replicas=0, max_replicas=3, slots_per_pod=1)
    controller = world.services.controller.reconciler
    await queue(world, pool.pool_id, 2)

    first = await controller.run_pass(pool.pool_id, check_secret=True, settle=False)
    assert first.created == []  # handed over: not done yet
    assert first.decision["actions"][0]["count"] == 2
    await until(lambda: gated.waiting == 2)

    gated.let(1)  # one lands; its batch records it once the other is done too
    await until(lambda: len(gated.of(pool.pool_id)) == 1)
    await queue(world, pool.pool_id, 3)  # 5 queued: 5 Pods wanted, max_replicas is 3
    second = await controller.run_pass(pool.pool_id, check_secret=False, settle=False)
    assert second.adopted == []  # the landed Pod is its batch's to record, not adopted
    assert second.decision["inputs"]["creating"] == 2
    assert second.decision["capacity_pods"] == 2
    assert [a["count"] for a in second.decision["actions"]] == [1]
    third = await controller.run_pass(pool.pool_id, check_secret=False, settle=False)
    assert third.decision["actions"] == []
    assert third.decision["capacity_pods"] == 3

    gated.let(2)
    await controller.settle(pool.pool_id)
    assert len(gated.of(pool.pool_id)) == 3
    assert sorted(await world.pods(pool.pool_id)) == sorted(gated.of(pool.pool_id))
    assert await world.events(pool.pool_id) == [
        ("hold", "max_replicas", "held"),
        ("create_pods", "scale_up", "done"),
        ("create_pods", "scale_up", "done"),
    ]
    after = await controller.run_pass(pool.pool_id, check_secret=False, settle=False)
    assert after.decision["inputs"]["creating"] == 0
    assert after.decision["capacity_pods"] == 3
    assert after.decision["actions"] == []
    assert after.adopted == []
    assert world.runtime.calls["create_agent"] == 3


async def test_a_failed_creation_is_reported_and_no_longer_counted(world: World) -> None:
    pool = await world.pool(min_replicas=0, max_replicas=4, slots_per_pod=1)
    controller = world.services.controller.reconciler
    queued = await queue(world, pool.pool_id, 2)
    world.runtime.fail("create_agent", times=1)

    await controller.run_pass(pool.pool_id, check_secret=True, settle=False)
    await controller.settle(pool.pool_id)

    (event,) = [e for e in await world.events(pool.pool_id) if e[0] == "create_pods"]
    assert event == ("create_pods", "scale_up", "failed")
    for task_id in queued:
        task = await world.services.tasks.get(task_id)
        assert task.reason.startswith("waiting: creating Pods failed"), task.reason
    assert len(world.runtime.of(pool.pool_id)) == 1  # the other one was created and recorded
    assert len(await world.pods(pool.pool_id)) == 1

    again = await controller.run_pass(pool.pool_id, check_secret=False, settle=False)
    assert again.decision["inputs"]["creating"] == 0  # the failure freed its count
    assert [a["count"] for a in again.decision["actions"]] == [1]
    await controller.settle(pool.pool_id)
    assert len(await world.pods(pool.pool_id)) == 2


async def test_stopping_the_controller_waits_for_the_creations_in_flight(
    world: World, gated: GatedRuntime
) -> None:
    pool = await world.pool(min_replicas=2)
    orchestration = world.services.controller.orchestration
    assert await orchestration.pass_once(pool.pool_id, 60.0) is not None
    await until(lambda: gated.waiting == 2)

    asyncio.get_running_loop().call_later(0.1, gated.let, 2)
    await orchestration.stop()

    assert gated.waiting == 0
    pods = await world.pods(pool.pool_id)
    assert sorted(pods) == sorted(gated.of(pool.pool_id))
    assert len(pods) == 2
    assert {p.state for p in pods.values()} == {PodState.starting}


async def test_stopping_cancels_creations_that_do_not_end(
    world: World, gated: GatedRuntime
) -> None:
    pool = await world.pool(min_replicas=2)
    controller = world.services.controller.reconciler
    await controller.run_pass(pool.pool_id, check_secret=True, settle=False)
    await until(lambda: gated.waiting == 2)

    await asyncio.wait_for(controller.stop(wait=0.05), 5)

    assert gated.waiting == 0
    assert gated.of(pool.pool_id) == []
    assert await world.pods(pool.pool_id) == {}
    # Forgotten: the next pass (a new leader's, say) plans afresh and creates them.
    gated.let(2)
    again = await controller.run_pass(pool.pool_id, check_secret=False)
    assert len(again.created) == 2


async def test_a_pool_deleted_with_creations_in_flight_leaves_no_pod_behind(
    world: World, gated: GatedRuntime
) -> None:
    pool = await world.pool(min_replicas=3)
    controller = world.services.controller.reconciler
    await controller.run_pass(pool.pool_id, check_secret=True, settle=False)
    await until(lambda: gated.waiting == 3)

    asyncio.get_running_loop().call_later(0.1, gated.let, 3)
    deleted = await world.services.removal.remove(pool.pool_id, force=True, by="t")

    assert len(deleted) == 3  # landed before the pool's Pods were listed, and deleted
    assert gated.of(pool.pool_id) == []


async def test_a_pod_created_after_its_pool_was_deleted_elsewhere_is_deleted(
    world: World, gated: GatedRuntime
) -> None:
    """Deleted by another server process (this one's removal did not wait for the batch)."""
    pool = await world.pool(min_replicas=2)
    controller = world.services.controller.reconciler
    await controller.run_pass(pool.pool_id, check_secret=True, settle=False)
    await until(lambda: gated.waiting == 2)
    await world.services.pools.delete(pool.pool_id, by="t")

    gated.let(2)
    await controller.settle(pool.pool_id)

    assert world.runtime.calls["create_agent"] == 2
    assert gated.of(pool.pool_id) == []
    assert len(world.runtime.deleted) == 2


def passes_so_far() -> float:
    return REGISTRY.get_sample_value("slotpool_controller_pass_seconds_count") or 0.0


async def test_a_worker_waits_with_its_next_pass_while_its_creations_keep_the_runtime_busy(
    world: World, gated: GatedRuntime
) -> None:
    pool = await world.pool(min_replicas=0, max_replicas=40, slots_per_pod=1)
    orchestration = Orchestration(
        reconciler=world.services.controller.reconciler,
        pools=world.services.pools,
        runtimes=PoolRuntimes(RuntimeRegistry({PoolType.k8s: gated}), world.services.pools),
        notifier=Notifier(),
        clock=world.clock,
        coalesce=Coalesce(pending=2, creating=30.0),  # no pass while more than 2 are unanswered
    )
    try:
        await queue(world, pool.pool_id, 10)
        before = passes_so_far() + 1
        await orchestration.run_once(5.0)  # its worker starts: a first pass hands over 10
        await until(lambda: gated.waiting == 10 and passes_so_far() == before)

        # A burst of wake-ups (submissions, watch events) while the 10 wait for the runtime.
        for _ in range(100):
            orchestration.poke(pool.pool_id)
            await asyncio.sleep(0.003)
        await asyncio.sleep(Coalesce().most * 3)
        assert passes_so_far() == before  # the runtime has work for as long as it has 3+

        gated.let(7)  # 3 left unanswered: still busy
        await until(lambda: len(gated.of(pool.pool_id)) == 7)
        await asyncio.sleep(Coalesce().most * 3)
        assert passes_so_far() == before

        gated.let(1)  # 2 left: the next pass comes (one, for all the wake-ups)
        await until(lambda: passes_so_far() == before + 1)
        await asyncio.sleep(Coalesce().most * 3)
        assert passes_so_far() == before + 1
        gated.let(2)
        await world.services.controller.reconciler.settle(pool.pool_id)
        assert world.runtime.calls["create_agent"] == 10  # nothing created twice
    finally:
        await orchestration.stop()
