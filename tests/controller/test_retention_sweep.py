"""Retention through the sweeper, with the default settings (tasks 30 days, logs 14, events 30),
on SQLite and PostgreSQL, the clock moved by the test."""

from __future__ import annotations

from datetime import timedelta

from slotpool.controller.sweeper import Sweeper
from slotpool.domain.config import PoolType
from slotpool.domain.events import NewEvent, Outcome
from slotpool.domain.tasks import TaskStatus, TaskSubmit
from slotpool.services.retention import RETENTION_EVERY
from slotpool.settings import Settings
from tests.controller.conftest import World

DAY = timedelta(days=1)


async def test_the_sweep_deletes_what_the_retention_settings_no_longer_keep(world: World) -> None:
    assert (world.settings.retain_tasks_days, world.settings.retain_logs_days) == (30, 14)
    assert world.settings.retain_events_days == 30
    pool = await world.pool(pool_type=PoolType.static)
    tasks = world.services.tasks
    body = TaskSubmit.model_validate({"pool_id": pool.pool_id, "command": "true"})
    start = world.clock()

    async def finished_at(age: timedelta) -> str:
        """A task with a log chunk, cancelled ``age`` before the sweep."""
        world.clock.now = start - age
        task = await tasks.submit(body, by="test")
        async with world.store.unit_of_work() as uow:
            await uow.tasks.add_log(task.id, step=0, seq=0, data="x", now=world.clock())
        assert (await tasks.cancel(task.id, by="test")).status is TaskStatus.cancelled
        return task.id

    gone, logs_gone = await finished_at(31 * DAY), await finished_at(15 * DAY)
    kept = await finished_at(14 * DAY - timedelta(minutes=1))
    world.clock.now = start - 400 * DAY
    waiting = (await tasks.submit(body, by="test")).id  # queued for 400 days: never deleted
    event = NewEvent(action="hold", reason="frozen", message="m", outcome=Outcome.held, inputs={})
    async with world.store.unit_of_work() as uow:
        await uow.events.add(pool.pool_id, [event], now=start - 31 * DAY)
        await uow.events.add(pool.pool_id, [event], now=start - 29 * DAY)
    world.clock.now = start

    sweeper = Sweeper(
        store=world.store,
        settings=world.settings,
        dispatcher=world.services.agents.dispatcher,
        clock=world.clock,
    )
    await sweeper.sweep()

    async def left() -> dict[str, int | None]:
        found: dict[str, int | None] = {}
        async with world.store.unit_of_work() as uow:
            for task_id in (gone, logs_gone, kept, waiting):
                chunks = len(await uow.tasks.logs(task_id, after=0, limit=10))
                found[task_id] = chunks if await uow.tasks.get(task_id) else None
        return found

    assert await left() == {gone: None, logs_gone: 0, kept: 1, waiting: 0}
    async with world.store.unit_of_work() as uow:
        _, events = await uow.events.page(pool.pool_id, limit=10, before=None)
    assert events == 1

    # Then once every RETENTION_EVERY, not every second.
    world.clock.now = start + timedelta(minutes=5)
    await sweeper.sweep()
    assert (await left())[kept] == 1, "14 days old now, but the last run was 5 minutes ago"
    world.clock.now = start + RETENTION_EVERY
    await sweeper.sweep()
    assert await left() == {gone: None, logs_gone: 0, kept: 0, waiting: 0}


async def test_zero_days_keeps_everything(world: World) -> None:
    pool = await world.pool(pool_type=PoolType.static)
    body = TaskSubmit.model_validate({"pool_id": pool.pool_id, "command": "true"})
    start = world.clock()
    world.clock.now = start - 3000 * DAY
    task = await world.services.tasks.submit(body, by="test")
    await world.services.tasks.cancel(task.id, by="test")
    world.clock.now = start
    forever = Settings(
        database_url=world.settings.database_url,
        local_runtime=False,
        retain_tasks_days=0,
        retain_logs_days=0,
        retain_events_days=0,
    )
    sweeper = Sweeper(
        store=world.store,
        settings=forever,
        dispatcher=world.services.agents.dispatcher,
        clock=world.clock,
    )
    await sweeper.sweep()
    async with world.store.unit_of_work() as uow:
        assert await uow.tasks.get(task.id) is not None
