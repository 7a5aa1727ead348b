"""``Store.reading``: a unit of work that only reads, on both databases.

It sees what has been committed, refuses every kind of write before it reaches the database,
waits for no SQLite turn (a write held open in this process does not hold it up), checks no
leader's lease, and on PostgreSQL runs its statements without a transaction (autocommit: no
BEGIN and COMMIT round trips), leaving the pool's connection as it found it.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import psycopg
import pytest
from sqlalchemy import literal, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from slotpool.domain.config import PoolType
from slotpool.domain.leadership import CURRENT, Lease
from slotpool.domain.signals import Signal
from slotpool.store.errors import ReadOnlyViolation
from slotpool.store.models import AgentPoolRow
from slotpool.store.pools import NewPool
from slotpool.store.uow import Store

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
POOL = "pool-reading00000001"


async def add_pool(store: Store, name: str = "p") -> None:
    async with store.unit_of_work() as uow:
        await uow.pools.add(NewPool(POOL, name, "", PoolType.static, None, by="test", now=NOW))


async def test_it_reads_what_was_committed(store: Store) -> None:
    async with store.reading() as uow:
        assert await uow.pools.read(POOL) is None
    await add_pool(store)
    async with store.reading() as uow:
        pool = await uow.pools.read(POOL)
    assert pool is not None
    assert pool.name == "p"


async def test_every_kind_of_write_is_refused_and_nothing_changes(store: Store) -> None:
    await add_pool(store)
    with pytest.raises(ReadOnlyViolation):
        async with store.reading() as uow:
            await uow.pools._session.execute(
                update(AgentPoolRow).where(AgentPoolRow.pool_id == POOL).values(name="q")
            )
    with pytest.raises(ReadOnlyViolation):
        async with store.reading() as uow:
            await uow.pools.add(NewPool("pool-reading00000002", "r", "", PoolType.static, None,
                                        by="test", now=NOW))  # fmt: skip
    with pytest.raises(ReadOnlyViolation):
        async with store.reading() as uow:
            uow.signal(Signal.pool(POOL))
    with pytest.raises(ReadOnlyViolation):
        async with store.reading() as uow:
            uow.after_commit(lambda: None)

    async with store.reading() as uow:
        pool = await uow.pools.read(POOL)
        assert await uow.pools.read("pool-reading00000002") is None
    assert pool is not None
    assert pool.name == "p"


async def test_it_does_not_wait_for_a_write_held_open(store: Store) -> None:
    """On SQLite a unit of work waits for the writer's turn; a reading one does not (WAL lets
    it read the last commit meanwhile). On PostgreSQL nothing waits either way."""
    await add_pool(store)
    writing = asyncio.Event()
    release = asyncio.Event()

    async def writer() -> None:
        async with store.unit_of_work() as uow:
            await uow.pools.update(POOL, by="test", now=NOW, name="renamed")
            writing.set()
            await release.wait()

    held = asyncio.create_task(writer())
    await writing.wait()
    try:
        async with asyncio.timeout(5):
            async with store.reading() as uow:
                pool = await uow.pools.read(POOL)
        assert pool is not None
        assert pool.name == "p", "the write is not committed yet"
        assert not held.done()
    finally:
        release.set()
        await held
    async with store.reading() as uow:
        pool = await uow.pools.read(POOL)
    assert pool is not None
    assert pool.name == "renamed"


async def test_a_lost_lease_refuses_writes_but_not_reads(store: Store) -> None:
    await add_pool(store)
    lease = Lease("replica-a", term=1, deadline=0.0, monotonic=lambda: 1.0)  # ran out
    token = CURRENT.set(lease)
    try:
        async with store.reading() as uow:
            assert await uow.pools.read(POOL) is not None
        with pytest.raises(Exception, match="no longer leads"):
            async with store.unit_of_work() as uow:
                await uow.pools.read(POOL)
    finally:
        CURRENT.reset(token)


async def driver_connection(session: AsyncSession) -> psycopg.AsyncConnection[Any]:
    raw = await (await session.connection()).get_raw_connection()
    assert isinstance(raw.driver_connection, psycopg.AsyncConnection)
    return raw.driver_connection


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
async def test_on_postgresql_it_runs_outside_a_transaction(store: Store) -> None:
    """Autocommit: no transaction is open while it reads (no BEGIN was sent), and the
    connection goes back to the pool in its default mode for the next unit of work."""
    async with store.reading() as uow:
        session = uow.pools._session
        await session.execute(select(literal(1)))
        raw = await driver_connection(session)
        assert raw.autocommit is True
        assert raw.info.transaction_status is psycopg.pq.TransactionStatus.IDLE
    async with store.unit_of_work() as uow:
        session = uow.pools._session
        await session.execute(select(literal(1)))
        raw = await driver_connection(session)
        assert raw.autocommit is False
        assert raw.info.transaction_status is psycopg.pq.TransactionStatus.INTRANS


async def test_leaving_a_unit_of_work_does_not_pass_the_event_loop(store: Store) -> None:
    """Closing the session after a commit (or a read) happens in the task itself: another task
    that is ready meanwhile does not run first (SQLAlchemy's own exit would close it in a task
    of its own, and let every ready task run before the caller goes on). On SQLite nothing in
    a unit of work waits (``store/inline_sqlite.py``), so the whole of it runs at once."""
    if store.backend != "sqlite":
        pytest.skip("PostgreSQL's statements wait for the network: other tasks run meanwhile")
    await add_pool(store)
    ran: list[str] = []
    other = asyncio.get_running_loop().call_soon(ran.append, "other")
    async with store.unit_of_work() as uow:
        await uow.pools.update(POOL, by="test", now=NOW, description="changed")
    async with store.reading() as reading:
        await reading.pools.read(POOL)
    assert ran == [], "nothing else ran in between"
    other.cancel()


async def test_a_failed_unit_of_work_gives_its_connection_back(store: Store) -> None:
    await add_pool(store)
    pool = store._engine.pool

    class Refused(Exception):
        pass

    async def write_then_fail() -> None:
        async with store.unit_of_work() as uow:
            await uow.pools.update(POOL, by="test", now=NOW, description="lost")
            raise Refused

    async def read_then_fail() -> None:
        async with store.reading() as reading:
            await reading.pools.read(POOL)
            raise Refused

    for _ in range(3):
        with pytest.raises(Refused):
            await write_then_fail()
        with pytest.raises(Refused):
            await read_then_fail()
    assert pool.checkedout() == 0  # type: ignore[attr-defined]
    async with store.reading() as reading:
        kept = await reading.pools.read(POOL)
    assert kept is not None
    assert kept.description == ""
