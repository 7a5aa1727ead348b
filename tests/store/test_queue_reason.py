"""Why queued tasks wait (``TaskRepository.explain_queued``): a pass that says what the queue
already says writes nothing; only the tasks whose reason differs (new ones) are written."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Engine

from slotpool.clock import utc_now
from slotpool.domain.config import PoolConfig, PoolType
from slotpool.domain.tasks import TaskSubmit
from slotpool.services.pools import PoolService
from slotpool.services.tasks import new_task_row
from slotpool.settings import Settings
from slotpool.store.uow import Store

REASON = "waiting for a free slot: Pods are starting"


@contextmanager
def task_updates() -> Iterator[list[int]]:
    """The rows each UPDATE of the tasks table wrote while the block ran."""
    written: list[int] = []

    def after(conn: Any, cursor: Any, statement: str, *_: Any) -> None:
        if statement.lstrip().upper().startswith("UPDATE TASKS"):
            written.append(cursor.rowcount)

    event.listen(Engine, "after_cursor_execute", after)
    try:
        yield written
    finally:
        event.remove(Engine, "after_cursor_execute", after)


async def queued(store: Store, pool_id: str, count: int) -> None:
    async with store.unit_of_work() as uow:
        for _ in range(count):
            body = TaskSubmit(pool_id=pool_id, command="true")
            await uow.tasks.add(new_task_row(body, by="t", now=utc_now()))


async def reasons(store: Store, pool_id: str) -> list[str]:
    async with store.unit_of_work() as uow:
        tasks, _ = await uow.tasks.page(
            pool_id=pool_id, status=None, created_by=None, limit=100, offset=0
        )
    return [t.reason for t in tasks]


async def test_an_unchanged_reason_is_not_written_again(store: Store, database_url: str) -> None:
    settings = Settings(database_url=database_url, local_runtime=False)
    pools = PoolService(store, settings, utc_now)
    pool = await pools.create(
        name="p", description="", pool_type=PoolType.static, config=PoolConfig(), by="t"
    )
    await queued(store, pool.pool_id, 5)

    with task_updates() as written:
        async with store.unit_of_work() as uow:
            await uow.tasks.explain_queued(pool.pool_id, reason=REASON)
    assert written == [5]
    assert await reasons(store, pool.pool_id) == [REASON] * 5

    with task_updates() as written:  # the next pass says the same: nothing is written
        async with store.unit_of_work() as uow:
            await uow.tasks.explain_queued(pool.pool_id, reason=REASON)
    assert written == []

    await queued(store, pool.pool_id, 2)  # submitted since: only those are written
    with task_updates() as written:
        async with store.unit_of_work() as uow:
            await uow.tasks.explain_queued(pool.pool_id, reason=REASON)
    assert written == [2]
    assert await reasons(store, pool.pool_id) == [REASON] * 7
