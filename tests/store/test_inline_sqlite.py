"""The server's SQLite connections run in the event loop's thread: a write that finds the database
locked waits with the loop running (so the lock's holder, in the same process, can finish), and
gives up with SQLite's own error after the busy time."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

from slotpool.store.db import create_engine
from slotpool.store.inline_sqlite import InlineConnection, inline_creator


async def _connection(path: Path, busy_seconds: float) -> InlineConnection:
    connection: InlineConnection = await inline_creator(
        [str(path)], {}, busy_seconds=busy_seconds
    )()
    cursor = await connection.execute("PRAGMA journal_mode=WAL")
    await cursor.close()
    return connection


@pytest.fixture
def database(tmp_path: Path) -> Path:
    path = tmp_path / "x.db"
    with sqlite3.connect(path) as setup:
        setup.execute("CREATE TABLE t (x INTEGER)")
    return path


async def test_a_locked_write_waits_with_the_loop_running(database: Path) -> None:
    holder = await _connection(database, busy_seconds=10)
    waiter = await _connection(database, busy_seconds=10)
    await holder.execute("INSERT INTO t VALUES (1)")  # holds the write lock until its commit

    async def write() -> None:
        await waiter.execute("INSERT INTO t VALUES (2)")
        await waiter.commit()

    writing = asyncio.create_task(write())
    await asyncio.sleep(0.2)  # the loop runs: the waiter does not block it
    assert not writing.done()
    await holder.commit()
    await asyncio.wait_for(writing, 5)
    rows = await (await holder.execute("SELECT x FROM t ORDER BY x")).fetchall()
    assert rows == [(1,), (2,)]
    await holder.close()
    await waiter.close()


async def test_a_write_locked_too_long_fails_as_sqlite_would(database: Path) -> None:
    holder = await _connection(database, busy_seconds=10)
    waiter = await _connection(database, busy_seconds=0.3)
    await holder.execute("INSERT INTO t VALUES (1)")
    with pytest.raises(sqlite3.OperationalError, match="database is locked"):
        await waiter.execute("INSERT INTO t VALUES (2)")
    await holder.rollback()
    await holder.close()
    await waiter.close()


async def test_other_errors_are_not_retried(database: Path) -> None:
    connection = await _connection(database, busy_seconds=10)
    with pytest.raises(sqlite3.OperationalError, match="no such table"):
        await connection.execute("SELECT * FROM missing")
    await connection.close()


async def test_the_engine_streams_rows_and_reports_constraint_errors(database: Path) -> None:
    """Through SQLAlchemy (``db.create_engine``): a streamed result (a server-side cursor) and an
    error raised as the dialect's own."""
    engine = create_engine(f"sqlite:///{database}")
    try:
        async with engine.begin() as connection:
            await connection.execute(text("CREATE TABLE u (x INTEGER PRIMARY KEY)"))
            await connection.execute(text("INSERT INTO u VALUES (1), (2), (3)"))
        async with engine.connect() as connection:
            streamed = await connection.stream(text("SELECT x FROM u ORDER BY x"))
            assert [row.x async for row in streamed] == [1, 2, 3]
        with pytest.raises(IntegrityError):
            async with engine.begin() as connection:
                await connection.execute(text("INSERT INTO u VALUES (1)"))
    finally:
        await engine.dispose()
