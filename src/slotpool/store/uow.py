"""The store's front door: one engine per process, one transaction per unit of work.

Services open a unit of work, call repositories (which only flush) and leave it; it commits on a
clean exit and rolls back on an exception, so a refused request leaves nothing behind.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from contextvars import ContextVar

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from slotpool.store.db import backend, create_engine
from slotpool.store.events import PoolEventRepository
from slotpool.store.pods import PodRepository
from slotpool.store.pools import PoolRepository
from slotpool.store.stats import PoolStatsRepository
from slotpool.store.tasks import TaskRepository
from slotpool.store.tokens import AdminTokenRepository, PoolTokenRepository

# Set while the current task is inside a unit of work that holds the SQLite writer turn: a unit
# of work opened inside it (same task) does not wait for itself.
_HOLDING: ContextVar[bool] = ContextVar("slotpool_store_turn", default=False)


class UnitOfWork:
    def __init__(self, session: AsyncSession, backend: str) -> None:
        self.pools = PoolRepository(session)
        self.admin_tokens = AdminTokenRepository(session)
        self.pool_tokens = PoolTokenRepository(session)
        self.pods = PodRepository(session)
        self.tasks = TaskRepository(session, backend)
        self.stats = PoolStatsRepository(session)
        self.events = PoolEventRepository(session)


class Store:
    def __init__(self, url: str) -> None:
        self.url = url
        self.backend = backend(url)
        self._engine = create_engine(url)
        self._sessions = async_sessionmaker(self._engine, expire_on_commit=False)
        # SQLite has one writer at a time, and a writer that finds the database locked sleeps
        # in SQLite's busy handler (up to 100 ms a try). Units of work of this process take
        # turns here instead, in arrival order: under load that is the difference between
        # queueing for a few milliseconds and sleeping for hundreds. PostgreSQL needs no turns.
        self._turn = asyncio.Lock() if self.backend == "sqlite" else None

    @asynccontextmanager
    async def unit_of_work(self) -> AsyncIterator[UnitOfWork]:
        if self._turn is None or _HOLDING.get():
            async with self._sessions() as session, session.begin():
                yield UnitOfWork(session, self.backend)
            return
        async with self._turn:
            holding = _HOLDING.set(True)
            try:
                async with self._sessions() as session, session.begin():
                    yield UnitOfWork(session, self.backend)
            finally:
                _HOLDING.reset(holding)

    async def ping(self) -> None:
        async with self._engine.connect() as connection:
            await connection.execute(text("SELECT 1"))

    async def close(self) -> None:
        await self._engine.dispose()
