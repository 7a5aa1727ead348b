"""One change to a pool's Pods at a time: a controller pass, a pool's deletion and a rotation of
its Secret's token each hold the pool's lock while they act on the runtime.

In this process an asyncio lock per pool decides first. On PostgreSQL, where several server
processes may share the database, its holder then also takes the pool's advisory lock in the
database (``store/advisory.py``: freed when the holder's process dies, or after the leader's
lease when it stops answering), so at most one process acts on a pool's Pods at a time, and each
process waits on at most one database connection per pool. SQLite has one server process: the
asyncio lock is all there is.

A controller pass that finds nothing to do changes nothing, so it need not exclude another
process: it holds the process's lock only (``local``) while it looks, and takes the database's
(``shared``) only when it will act.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import defaultdict
from collections.abc import AsyncIterator

from slotpool.store.advisory import AdvisoryLocks


class PoolLocks:
    def __init__(self, database: AdvisoryLocks | None = None) -> None:
        self._locks: defaultdict[str, asyncio.Lock] = defaultdict(asyncio.Lock)
        self._database = database

    @property
    def spans_processes(self) -> bool:
        """Whether other processes are excluded too (a lock in the database)."""
        return self._database is not None

    @contextlib.asynccontextmanager
    async def of(self, pool_id: str) -> AsyncIterator[None]:
        """The pool's lock: ``async with locks.of(pool_id): ...``."""
        async with self.local(pool_id), self.shared(pool_id):
            yield

    def local(self, pool_id: str) -> asyncio.Lock:
        """This process's part of the pool's lock (take it first)."""
        return self._locks[pool_id]

    @contextlib.asynccontextmanager
    async def shared(self, pool_id: str) -> AsyncIterator[None]:
        """The database's part of the pool's lock, for a holder of ``local``: nothing on
        SQLite."""
        if self._database is None:
            yield
            return
        async with self._database.hold(f"pool:{pool_id}"):
            yield

    async def close(self) -> None:
        if self._database is not None:
            await self._database.close()
