"""No slot is ever given twice: several dispatchers with their own connections (as several server
processes would have) race over the same queued tasks, on SQLite and on PostgreSQL."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from slotpool.domain import transitions
from slotpool.domain.config import PoolConfig, PoolType
from slotpool.domain.pods import EndCause, Pod, PodEnd, SlotState
from slotpool.domain.pools import Pool
from slotpool.domain.tasks import StepStatus, TaskStatus, TaskSubmit
from slotpool.domain.transitions import StepReport
from slotpool.services.dispatch import Dispatcher, Start
from slotpool.services.notify import Notifier
from slotpool.services.pools import PoolService
from slotpool.services.tasks import TaskService
from slotpool.settings import Settings
from slotpool.store.migrate import upgrade
from slotpool.store.uow import Store

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


def clock() -> datetime:
    return NOW


def settings_of(database_url: str) -> Settings:
    upgrade(database_url)
    return Settings.model_validate({"database_url": database_url, "local_runtime": False})


async def static_pool(
    store: Store, settings: Settings, name: str, *, slots: int
) -> tuple[PoolService, Pool]:
    pools = PoolService(store, settings, clock)
    pool = await pools.create(
        name=name,
        description="",
        pool_type=PoolType.static,
        config=PoolConfig(slots_per_pod=slots),
        by="test",
    )
    return pools, pool


async def test_racing_dispatchers_never_double_book(database_url: str) -> None:
    settings = settings_of(database_url)
    stores = [Store(database_url) for _ in range(6)]
    try:
        pools, pool = await static_pool(stores[0], settings, "race", slots=4)
        for name in ("a", "b", "c"):
            await _register(stores[0], pool, name, slots=4)
        # Queue the tasks without dispatching them, then let six dispatchers loose at once.
        quiet = Dispatcher(stores[0], pools, clock)
        quiet.start_queued = _never  # type: ignore[method-assign]
        submitter = TaskService(stores[0], quiet, Notifier(), clock)
        body = TaskSubmit.model_validate({"pool_id": pool.pool_id, "command": "true"})
        for _ in range(30):
            await submitter.submit(body, by="test")
        racers = [Dispatcher(s, PoolService(s, settings, clock), clock) for s in stores]
        started = await asyncio.gather(*(r.dispatch(pool.pool_id) for r in racers))
        async with stores[0].unit_of_work() as uow:
            pods = await uow.pods.of_pool(pool.pool_id)
            tasks, _ = await uow.tasks.page(pool_id=pool.pool_id, status=None, limit=100, offset=0)
    finally:
        for store in stores:
            await store.close()
    busy = [
        (p.name, s.index, s.task_id) for p in pods for s in p.slots if s.state is SlotState.busy
    ]
    running = [t for t in tasks if t.status is TaskStatus.running]
    assert sum(started) == 12 == len(busy) == len(running)
    assert len({task_id for _, _, task_id in busy}) == 12, "a task holds two slots"
    assert Counter((t.pod_name, t.slot_index) for t in running).most_common(1)[0][1] == 1
    assert {(t.pod_name, t.slot_index, t.id) for t in running} == set(busy)
    assert sum(1 for t in tasks if t.status is TaskStatus.queued) == 18


SCALED_DOWN = PodEnd(EndCause.scaled_down)


async def _register(store: Store, pool: Pool, name: str, *, slots: int) -> Pod:
    """A static pod of ``pool`` registered by hand, as its agent would."""
    async with store.unit_of_work() as uow:
        return await uow.pods.register(
            pool_id=pool.pool_id,
            name=name,
            slots=slots,
            version="t",
            config_hash=None,
            credential_digest=None,
            now=NOW,
        )


async def _never(pool_id: str) -> list[Start]:
    return []


async def _drain(store: Store, pod_id: int) -> bool:
    async with store.unit_of_work() as uow:
        return await uow.pods.drain_if_idle(pod_id, SCALED_DOWN, reason="test", now=NOW)


async def _take(store: Store, pod_id: int) -> bool:
    async with store.unit_of_work() as uow:
        return await uow.pods.take_slot(pod_id, 1, task_id="task-late", now=NOW)


async def test_a_pod_is_never_drained_and_given_a_task_at_once(database_url: str) -> None:
    """Draining (before a delete) and taking a slot both write the pod's row first, so whichever
    comes second waits for the first to commit and then sees its effect: a slot taken meanwhile
    stops the drain, a drain meanwhile stops the take. Without the pod-row write in take_slot,
    PostgreSQL would let both succeed (each sees the other's row unchanged)."""
    settings = settings_of(database_url)
    stores = [Store(database_url), Store(database_url)]
    try:
        pools, pool = await static_pool(stores[0], settings, "drain", slots=2)
        pod = await _register(stores[0], pool, "p", slots=2)
        quiet = Dispatcher(stores[0], pools, clock)
        quiet.start_queued = _never  # type: ignore[method-assign]
        body = TaskSubmit.model_validate({"pool_id": pool.pool_id, "command": "true"})
        first = await TaskService(stores[0], quiet, Notifier(), clock).submit(body, by="test")

        # A slot is being taken: the drain waits for that transaction, then refuses.
        async with stores[0].unit_of_work() as uow:
            assert await uow.pods.take_slot(pod.id, 0, task_id=first.id, now=NOW)
            assert await uow.tasks.start(first.id, pod_id=pod.id, pod_name="p", slot=0, now=NOW)
            drain = asyncio.create_task(_drain(stores[1], pod.id))
            await asyncio.sleep(0.5)
            assert not drain.done(), "the drain did not wait for the open take"
        assert await drain is False
        async with stores[0].unit_of_work() as uow:
            found = await uow.pods.get(pod.id)
            assert found is not None
            assert found.state.value == "ready"
            running = await uow.tasks.get(first.id)
            assert running is not None
            report = StepReport(0, StepStatus.succeeded, exit_code=0, message="")
            ended = transitions.step_ended(running, report, reservation_ttl=timedelta(), now=NOW)
            assert await uow.tasks.apply(ended)  # the task ends, its slot is idle again

        # The pod is being drained: a take waits for that transaction, then refuses.
        async with stores[0].unit_of_work() as uow:
            assert await uow.pods.drain_if_idle(pod.id, SCALED_DOWN, reason="test", now=NOW)
            take = asyncio.create_task(_take(stores[1], pod.id))
            await asyncio.sleep(0.5)
            assert not take.done(), "the take did not wait for the open drain"
        assert await take is False
        async with stores[0].unit_of_work() as uow:
            found = await uow.pods.get(pod.id)
    finally:
        for store in stores:
            await store.close()
    assert found is not None
    assert found.state.value == "draining"
    assert all(s.state is SlotState.idle for s in found.slots)


async def test_a_dispatch_cancelled_while_waiting_does_not_stop_later_ones(
    database_url: str,
) -> None:
    """A dispatch waiting for the pool's lock is cancelled (its request's client went away):
    later dispatches of the pool must still run, not return at once as if one were waiting."""
    settings = settings_of(database_url)
    store = Store(database_url)
    try:
        pools, pool = await static_pool(store, settings, "cancelled", slots=2)
        await _register(store, pool, "a", slots=2)
        quiet = Dispatcher(store, pools, clock)
        quiet.start_queued = _never  # type: ignore[method-assign]
        body = TaskSubmit.model_validate({"pool_id": pool.pool_id, "command": "true"})
        await TaskService(store, quiet, Notifier(), clock).submit(body, by="test")

        dispatcher = Dispatcher(store, pools, clock)
        lock = dispatcher._locks[pool.pool_id]
        await lock.acquire()  # a dispatch in progress
        waiting = asyncio.create_task(dispatcher.dispatch(pool.pool_id))
        await asyncio.sleep(0.05)
        waiting.cancel()
        await asyncio.gather(waiting, return_exceptions=True)
        lock.release()
        started = await dispatcher.dispatch(pool.pool_id)
    finally:
        await store.close()
    assert waiting.cancelled()
    assert started == 1


async def test_explaining_the_queue_never_waits_for_a_task_being_started(
    database_url: str,
) -> None:
    """A dispatcher holds a queued task's row (it is starting it) while the controller writes
    why the pool's queued tasks wait: the controller skips that row instead of waiting for it,
    so the two never deadlock (PostgreSQL found one in the dispatch benchmark: the dispatcher
    takes rows one by one in queue order, the controller's single UPDATE in the table's)."""
    if database_url.startswith("sqlite"):
        pytest.skip("SQLite has no row locks: one writer at a time, nothing to deadlock on")
    settings = settings_of(database_url)
    stores = [Store(database_url), Store(database_url)]
    try:
        _, pool = await static_pool(stores[0], settings, "explain", slots=1)
        quiet = Dispatcher(stores[0], PoolService(stores[0], settings, clock), clock)
        quiet.start_queued = _never  # type: ignore[method-assign]
        body = TaskSubmit.model_validate({"pool_id": pool.pool_id, "command": "true"})
        submitter = TaskService(stores[0], quiet, Notifier(), clock)
        held, other = [await submitter.submit(body, by="test") for _ in range(2)]
        async with stores[0].unit_of_work() as holding:
            # The dispatcher's write to the first task, not committed yet.
            assert await holding.tasks.start(held.id, pod_id=1, pod_name="p", slot=0, now=NOW)

            async def explain() -> None:
                async with stores[1].unit_of_work() as uow:
                    await uow.tasks.explain_queued(pool.pool_id, reason="waiting: test")

            await asyncio.wait_for(explain(), timeout=10)
        async with stores[0].unit_of_work() as uow:
            reasons = {t: (await uow.tasks.get(t)) for t in (held.id, other.id)}
    finally:
        for store in stores:
            await store.close()
    explained, skipped = reasons[other.id], reasons[held.id]
    assert explained is not None
    assert explained.reason == "waiting: test"
    assert skipped is not None
    assert skipped.reason == ""


@pytest.mark.postgres
async def test_dispatchers_of_several_processes_take_turns(pg_server: Any) -> None:
    """Replicas dispatching one pool at once read different snapshots: without turns they could
    lock its pods and tasks in opposite orders, and PostgreSQL aborted one as a deadlock (43 times
    in a three-replica benchmark). A dispatcher of another process waits for the pool's turn,
    held here by an open transaction, and then places the queue as it is once that committed."""
    with pg_server.temporary_database() as url:
        settings = settings_of(url)
        stores = [Store(url), Store(url)]
        try:
            pools, pool = await static_pool(stores[0], settings, "turns", slots=2)
            await _register(stores[0], pool, "a", slots=2)
            quiet = Dispatcher(stores[0], pools, clock)
            quiet.start_queued = _never  # type: ignore[method-assign]
            submitter = TaskService(stores[0], quiet, Notifier(), clock)
            body = TaskSubmit.model_validate({"pool_id": pool.pool_id, "command": "true"})
            await submitter.submit(body, by="test")
            other = Dispatcher(stores[1], PoolService(stores[1], settings, clock), clock)
            async with stores[0].unit_of_work() as uow:
                await uow.pods.dispatch_turn(pool.pool_id)
                racer = asyncio.create_task(other.dispatch(pool.pool_id))
                await asyncio.sleep(1.0)
                waited = not racer.done()
                await submitter.submit(body, by="test")  # in the queue once this commits
            started = await racer
        finally:
            for store in stores:
                await store.close()
    assert waited, "the other process's dispatcher did not wait for the pool's turn"
    assert started == 2
