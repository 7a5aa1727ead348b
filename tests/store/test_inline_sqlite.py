"""The server's SQLite sessions make their calls in the event loop's thread
(``store/inline_sqlite.py``): a unit of work takes SQLite's write lock at its start, and if
another connection holds it, waits with the loop running (so that the holder can finish) and
gives up after the busy time (``TransactionAborted``: answered 503, try again). Errors are
SQLAlchemy's, as before.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError, OperationalError

from slotpool.domain.config import PoolType
from slotpool.store import uow as uow_module
from slotpool.store.errors import Conflict, TransactionAborted
from slotpool.store.migrate import upgrade
from slotpool.store.pools import NewPool
from slotpool.store.uow import Store

NOW = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)


@pytest.fixture
def url(tmp_path: Path) -> str:
    database = f"sqlite:///{tmp_path / 'x.db'}"
    upgrade(database)
    return database


@pytest.fixture
async def store(url: str) -> AsyncIterator[Store]:
    opened = Store(url)
    yield opened
    await opened.close()


@contextmanager
def write_lock_held(url: str) -> Iterator[sqlite3.Connection]:
    """Another connection (an operator's shell, say) holding SQLite's write lock."""
    other = sqlite3.connect(url.removeprefix("sqlite:///"), isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    try:
        yield other
    finally:
        if other.in_transaction:
            other.rollback()
        other.close()


def new_pool(pool_id: str, name: str) -> NewPool:
    return NewPool(pool_id, name, "", PoolType.static, None, by="test", now=NOW)


async def pool_names(store: Store) -> list[str]:
    async with store.reading() as uow:
        pools, _ = await uow.pools.list(limit=100, offset=0)
    return sorted(pool.name for pool in pools)


async def test_a_unit_of_work_waits_for_another_connections_write_with_the_loop_running(
    store: Store, url: str
) -> None:
    with write_lock_held(url) as other:

        async def write() -> None:
            async with store.unit_of_work() as uow:
                await uow.pools.add(new_pool("pool-inline0000000001", "mine"))

        writing = asyncio.create_task(write())
        ticks = 0
        for _ in range(20):  # the loop runs while the unit of work waits
            await asyncio.sleep(0.01)
            ticks += 1
        assert ticks == 20
        assert not writing.done()
        other.execute("UPDATE agent_pools SET description = 'theirs'")  # no row yet
        other.commit()
        await asyncio.wait_for(writing, 5)
    assert await pool_names(store) == ["mine"]


async def test_a_write_lock_held_too_long_aborts_the_unit_of_work(
    url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(uow_module, "BUSY_SECONDS", 0.3)
    store = Store(url)
    try:
        with (
            write_lock_held(url),
            pytest.raises(TransactionAborted, match="database is locked"),
        ):
            async with store.unit_of_work() as uow:
                await uow.pools.add(new_pool("pool-inline0000000001", "lost"))
        assert await pool_names(store) == []
        async with store.unit_of_work() as uow:  # the connection is fine afterwards
            await uow.pools.add(new_pool("pool-inline0000000001", "later"))
        assert await pool_names(store) == ["later"]
    finally:
        await store.close()


async def test_a_read_is_not_held_up_by_another_connections_write(store: Store, url: str) -> None:
    async with store.unit_of_work() as uow:
        await uow.pools.add(new_pool("pool-inline0000000001", "kept"))
    with write_lock_held(url):
        assert await pool_names(store) == ["kept"]  # WAL: readers do not wait


async def test_errors_are_sqlalchemys_and_nothing_of_the_unit_of_work_stays(
    store: Store,
) -> None:

    async def same_name_twice() -> None:
        async with store.unit_of_work() as uow:
            await uow.pools.add(new_pool("pool-inline0000000001", "same"))
            await uow.pools.add(new_pool("pool-inline0000000002", "same"))

    with pytest.raises(Conflict) as refused:
        await same_name_twice()
    assert isinstance(refused.value.__cause__, IntegrityError)
    with pytest.raises(OperationalError, match="no such table"):  # not waited on
        async with store.unit_of_work() as uow:
            await uow.pools._session.execute(text("SELECT * FROM missing"))
    assert await pool_names(store) == []


async def test_a_statement_does_not_pass_the_event_loop(store: Store) -> None:
    """The point of the inline session: nothing else runs between a unit of work's
    statements (each used to cost a greenlet switch and, before that, a thread hop)."""
    ran: list[str] = []
    other = asyncio.get_running_loop().call_soon(ran.append, "other")
    async with store.unit_of_work() as uow:
        await uow.pools.add(new_pool("pool-inline0000000001", "p"))
        await uow.pools.read("pool-inline0000000001")
        await uow.tasks.count_queued("pool-inline0000000001")
    assert ran == []
    other.cancel()
