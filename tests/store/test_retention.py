"""Retention's deletions (``RetentionRepository``) on SQLite and PostgreSQL: only final tasks
finished before the cutoff go (with their logs), logs go without their task, events by age, and
each call deletes one batch."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from slotpool.domain import transitions
from slotpool.domain.config import PoolType
from slotpool.domain.events import NewEvent, Outcome
from slotpool.domain.history import PoolLoad, PoolSample
from slotpool.domain.tasks import Task, TaskSubmit
from slotpool.services.tasks import new_task_row
from slotpool.store.pools import NewPool
from slotpool.store.uow import Store

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
CUTOFF = NOW - timedelta(days=30)
OLD = CUTOFF - timedelta(days=1)
RECENT = CUTOFF + timedelta(days=1)
POOL = "pool-0123456789abcdef"


@pytest.fixture
async def store(store: Store) -> Store:
    async with store.unit_of_work() as uow:
        await uow.pools.add(NewPool(POOL, "p", "", PoolType.static, None, by="test", now=OLD))
    return store


async def task(store: Store, *, created: datetime, cancelled: datetime | None = None) -> Task:
    """A task with two log chunks, cancelled (final) at ``cancelled`` if given."""
    body = TaskSubmit.model_validate({"pool_id": POOL, "command": "true"})
    async with store.unit_of_work() as uow:
        added = await uow.tasks.add(new_task_row(body, by="test", now=created))
        for seq in range(2):
            await uow.tasks.add_log(added.id, step=0, seq=seq, data="x", now=created)
        if cancelled is not None:
            change = transitions.cancel(added, by="test", now=cancelled)
            assert change is not None
            assert await uow.tasks.apply(change)
    return added


async def remaining(store: Store, *tasks: Task) -> dict[str, int | None]:
    """Each task's number of log chunks, None if the task is gone."""
    found: dict[str, int | None] = {}
    async with store.unit_of_work() as uow:
        for one in tasks:
            kept = await uow.tasks.get(one.id) is not None
            chunks = await uow.tasks.logs(one.id, after=0, limit=100)
            found[one.id] = len(chunks) if kept else None
    return found


async def test_only_final_tasks_finished_before_the_cutoff_are_deleted_with_their_logs(
    store: Store,
) -> None:
    old_done = await task(store, created=OLD, cancelled=OLD)
    recent_done = await task(store, created=OLD, cancelled=RECENT)
    old_queued = await task(store, created=OLD - timedelta(days=300))
    async with store.unit_of_work() as uow:
        assert await uow.retention.delete_tasks(finished_before=CUTOFF, limit=100) == 1
    assert await remaining(store, old_done, recent_done, old_queued) == {
        old_done.id: None,
        recent_done.id: 2,
        old_queued.id: 2,
    }


async def test_logs_of_tasks_finished_before_the_cutoff_go_and_the_tasks_stay(
    store: Store,
) -> None:
    old_done = await task(store, created=OLD, cancelled=OLD)
    recent_done = await task(store, created=OLD, cancelled=RECENT)
    old_queued = await task(store, created=OLD - timedelta(days=300))
    async with store.unit_of_work() as uow:
        assert await uow.retention.delete_logs(finished_before=CUTOFF, limit=100) == 2
    assert await remaining(store, old_done, recent_done, old_queued) == {
        old_done.id: 0,
        recent_done.id: 2,
        old_queued.id: 2,
    }


async def test_events_older_than_the_cutoff_go(store: Store) -> None:
    event = NewEvent(action="hold", reason="frozen", message="m", outcome=Outcome.held, inputs={})
    async with store.unit_of_work() as uow:
        await uow.events.add(POOL, [event, event], now=OLD)
        await uow.events.add(POOL, [event], now=RECENT)
    async with store.unit_of_work() as uow:
        assert await uow.retention.delete_events(before=CUTOFF, limit=100) == 2
        page, total = await uow.events.page(POOL, limit=10, before=None)
    assert total == 1
    assert [e.at for e in page] == [RECENT]


async def test_each_call_deletes_one_batch_oldest_first(store: Store) -> None:
    finished = [OLD - timedelta(days=n) for n in range(5)]
    tasks = [await task(store, created=OLD - timedelta(days=10), cancelled=at) for at in finished]
    async with store.unit_of_work() as uow:
        batches = [await uow.retention.delete_tasks(finished_before=CUTOFF, limit=2)]
    kept = await remaining(store, *tasks)
    assert [kept[t.id] is not None for t in tasks] == [True, True, True, False, False]
    for _ in range(3):
        async with store.unit_of_work() as uow:
            batches.append(await uow.retention.delete_tasks(finished_before=CUTOFF, limit=2))
    assert batches == [2, 2, 1, 0]
    async with store.unit_of_work() as uow:
        assert all([await uow.tasks.get(t.id) is None for t in tasks])


async def samples(store: Store, pool_id: str = POOL) -> list[datetime]:
    async with store.unit_of_work() as uow:
        found = await uow.history.between(
            pool_id, since=OLD - timedelta(days=30), until=NOW, limit=1000
        )
    return [s.at for s in found]


async def test_history_samples_older_than_the_cutoff_go_one_batch_a_call(store: Store) -> None:
    taken = [OLD - timedelta(minutes=n) for n in range(3)] + [RECENT]
    async with store.unit_of_work() as uow:
        await uow.history.add([PoolSample(POOL, at, PoolLoad(slots_busy=1)) for at in taken])
    async with store.unit_of_work() as uow:
        batches = [await uow.retention.delete_samples(before=CUTOFF, limit=2)]
    async with store.unit_of_work() as uow:
        batches.append(await uow.retention.delete_samples(before=CUTOFF, limit=2))
    assert batches == [2, 1]
    assert await samples(store) == [RECENT]


async def test_a_sample_stored_twice_is_kept_once_and_a_deleted_pool_takes_its_samples(
    store: Store,
) -> None:
    sample = PoolSample(POOL, RECENT, PoolLoad(slots_busy=1))
    for busy in (1, 2):  # another server sampled the same instant: the first one stays
        async with store.unit_of_work() as uow:
            await uow.history.add([PoolSample(POOL, RECENT, PoolLoad(slots_busy=busy))])
    async with store.unit_of_work() as uow:
        (kept,) = await uow.history.between(POOL, since=OLD, until=NOW, limit=10)
        assert kept == sample
        assert await uow.pools.delete(POOL)
    assert await samples(store) == []
