"""A pool's lock held in PostgreSQL (``store/advisory.py``, used by ``services/locks.PoolLocks``):
it excludes holders in other processes, and a holder that dies (SIGKILL) or stops answering
(SIGSTOP) does not keep it: its session ends, at once or after the hold timeout."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator

import psycopg
import pytest

from slotpool.services.locks import PoolLocks
from slotpool.store.advisory import AdvisoryLocks
from tests.support import processes
from tests.support.postgres import PostgresServer

pytestmark = pytest.mark.postgres
SECONDS = 30.0
HOLDER = textwrap.dedent(
    """
    import asyncio, sys
    from slotpool.store.advisory import AdvisoryLocks

    async def main() -> None:
        locks = AdvisoryLocks(sys.argv[1], hold_seconds=float(sys.argv[2]))
        async with locks.hold("pool:p-1"):
            print("held", flush=True)
            await asyncio.sleep(3600)

    asyncio.run(main())
    """
)


@pytest.fixture
def pg_url(pg_server: PostgresServer) -> Iterator[str]:
    with pg_server.temporary_database() as url:
        yield url


@pytest.fixture
def holder(pg_url: str, request: pytest.FixtureRequest) -> Iterator[subprocess.Popen[str]]:
    """Another process holding the lock of pool ``p-1`` (hold timeout: the test's param)."""
    hold_seconds = getattr(request, "param", 30.0)
    process = subprocess.Popen(
        [sys.executable, "-c", HOLDER, pg_url, str(hold_seconds)],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    try:
        assert process.stdout is not None
        assert process.stdout.readline().strip() == "held"
        yield process
    finally:
        os.kill(process.pid, signal.SIGCONT)
        processes.kill_all(processes.tree([process.pid]))
        process.wait()


async def _waiting_for_a_lock(url: str) -> bool:
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as admin:
        cursor = await admin.execute(
            "SELECT count(*) FROM pg_locks l JOIN pg_database d ON d.oid = l.database"
            " WHERE l.locktype = 'advisory' AND NOT l.granted AND d.datname = current_database()"
        )
        row = await cursor.fetchone()
    return bool(row and row[0])


async def _take(locks: PoolLocks, pool_id: str, got: list[str]) -> None:
    async with locks.of(pool_id):
        got.append(pool_id)


async def _until_waiting(url: str) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + SECONDS
    while not await _waiting_for_a_lock(url):
        assert loop.time() < deadline, "nobody waits for the lock"
        await asyncio.sleep(0.05)


async def test_a_pools_lock_excludes_another_process_and_is_freed_when_that_one_dies(
    pg_url: str, holder: subprocess.Popen[str]
) -> None:
    locks = PoolLocks(AdvisoryLocks(pg_url, hold_seconds=30))
    got: list[str] = []
    try:
        assert await asyncio.wait_for(_take_other(locks, got), SECONDS) == ["p-2"]
        waiting = asyncio.create_task(_take(locks, "p-1", got))
        await _until_waiting(pg_url)  # PostgreSQL has it wait for the other process
        assert not waiting.done()
        holder.kill()  # a crash: its connection closes, its session and locks end
        await asyncio.wait_for(waiting, SECONDS)
    finally:
        await locks.close()
    assert got == ["p-2", "p-1"]


async def _take_other(locks: PoolLocks, got: list[str]) -> list[str]:
    """Another pool's lock is not held by the other process: taken at once."""
    await _take(locks, "p-2", got)
    return got


@pytest.mark.parametrize("holder", [1.5], indirect=True)
async def test_a_paused_holder_loses_the_lock_after_the_hold_timeout(
    pg_url: str, holder: subprocess.Popen[str]
) -> None:
    locks = PoolLocks(AdvisoryLocks(pg_url, hold_seconds=30))
    got: list[str] = []
    try:
        os.kill(holder.pid, signal.SIGSTOP)  # its connection stays open, it answers nothing
        await asyncio.wait_for(_take(locks, "p-1", got), SECONDS)
    finally:
        await locks.close()
    assert got == ["p-1"]


async def test_in_one_process_the_lock_excludes_and_a_cancelled_waiter_leaves_it_free(
    pg_url: str,
) -> None:
    locks = PoolLocks(AdvisoryLocks(pg_url, hold_seconds=30))
    other = PoolLocks(AdvisoryLocks(pg_url, hold_seconds=30))  # as another process would
    got: list[str] = []
    try:
        async with locks.of("p-1"):
            waiting = asyncio.create_task(_take(other, "p-1", got))
            await _until_waiting(pg_url)
            waiting.cancel()  # its request went away while PostgreSQL had it wait
            await asyncio.gather(waiting, return_exceptions=True)
        await asyncio.wait_for(_take(other, "p-1", got), SECONDS)
        await asyncio.wait_for(_take(locks, "p-1", got), SECONDS)  # a kept connection again
    finally:
        await locks.close()
        await other.close()
    assert waiting.cancelled()
    assert got == ["p-1", "p-1"]


async def test_a_kept_connection_that_postgresql_ended_is_replaced(pg_url: str) -> None:
    """Between holds a few connections are kept; one whose session ended meanwhile (PostgreSQL
    restarted, an operator terminated it) is dropped and the lock taken on a new one."""
    locks = PoolLocks(AdvisoryLocks(pg_url, hold_seconds=30))
    got: list[str] = []
    try:
        await _take(locks, "p-1", got)  # its connection is kept
        async with await psycopg.AsyncConnection.connect(pg_url, autocommit=True) as admin:
            cursor = await admin.execute(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
            assert await cursor.fetchone() == (1,)
        await asyncio.wait_for(_take(locks, "p-1", got), SECONDS)
    finally:
        await locks.close()
    assert got == ["p-1", "p-1"]
