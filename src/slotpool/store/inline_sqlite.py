"""SQLite for the server without a thread and without a greenlet: the units of work's sessions
are ``AsyncSession``s whose calls are made at once, in the event loop's thread, on a plain
``Session`` over ``sqlite3``.

The repositories are written for ``AsyncSession`` (PostgreSQL's sessions really wait for the
network). On the server's SQLite database (a local file, WAL) a statement takes microseconds, and
every layer SQLAlchemy's asyncio extension puts around it cost more than the statement: a
greenlet spawned per call, a switch back to the loop per driver call, the async pool's adapter.
Measured on the task path, a unit of work of three statements cost about 400 us through the
async engine (aiosqlite's adapter, its calls already made inline) and about 170 us this way
(``bench/DISPATCH.md`` has the effect on a task). ``InlineSession`` keeps the repositories'
interface (``await session.execute(...)`` and the rest) and SQLAlchemy's ORM, dialect, pool and
errors: only the hop is gone.

What a call blocks meanwhile is the event loop, for as long as SQLite takes: short, since this
process is the only server on its database (``store.exclusive``), its units of work take turns
as SQLite's one writer (``uow.Store``) and readers never wait in WAL mode. A unit of work takes
SQLite's write lock at its start (``BEGIN IMMEDIATE``: its statements then never find the
database locked, and a read cannot turn into a write that has to give up). If another
connection holds that lock (an operator's ``sqlite3`` shell, a second ``Store``), the wait must
not sleep in SQLite's busy handler, which would stop the whole server, the lock's holder
included when it is this process: the connections run with SQLite's busy timeout at 0 and the
wait is here, ``asyncio.sleep`` between tries, up to ``busy_seconds``, as SQLite's handler would
(same growing pauses). A read outside a unit of work that finds the database busy (WAL recovery)
is tried again the same way. What still blocks the loop: the commit that passes SQLite's WAL
auto-checkpoint (1,000 pages) copies the log into the database and syncs it, once every few
thousand small commits; on a slow disk that is a pause of every request for as long.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

T = TypeVar("T")

# Locked by another connection: worth another try. Not SQLITE_BUSY_SNAPSHOT (517), a transaction
# whose snapshot is older than the last commit, which no wait can help (SQLite does not retry it
# either).
RETRIED = frozenset({sqlite3.SQLITE_BUSY, 261})  # 261: SQLITE_BUSY_RECOVERY
PAUSES = (0.001, 0.002, 0.005, 0.01, 0.015, 0.02, 0.025, 0.025, 0.025, 0.05, 0.05, 0.1)  # SQLite's


def busy(exc: BaseException) -> bool:
    """Whether the statement failed only because another connection holds the lock (the
    driver's error, or SQLAlchemy's around it)."""
    error = exc.orig if isinstance(exc, DBAPIError) else exc
    return (
        isinstance(error, sqlite3.OperationalError)
        and getattr(error, "sqlite_errorcode", None) in RETRIED
    )


async def patiently(call: Callable[[], T], busy_seconds: float) -> T:
    """``call()``, tried again while the database is locked by another connection, for up to
    ``busy_seconds``; the event loop runs meanwhile."""
    waited = 0.0
    tries = 0
    while True:
        try:
            return call()
        except (sqlite3.OperationalError, DBAPIError) as exc:
            if not busy(exc) or waited >= busy_seconds:
                raise
        pause = min(PAUSES[min(tries, len(PAUSES) - 1)], busy_seconds - waited)
        await asyncio.sleep(pause)
        waited += pause
        tries += 1


def connect(args: Sequence[Any], kwargs: Mapping[str, Any]) -> Callable[[], sqlite3.Connection]:
    """The engine's ``creator``: a ``sqlite3`` connection whose busy handler never sleeps
    (timeout 0: ``patiently`` waits instead) and that begins no transaction by itself
    (``isolation_level=None``): a unit of work says ``BEGIN IMMEDIATE``, a read runs each
    statement on its own."""

    def creator() -> sqlite3.Connection:
        options = {**kwargs, "timeout": 0, "isolation_level": None, "check_same_thread": False}
        connection: sqlite3.Connection = sqlite3.connect(*args, **options)
        return connection

    return creator


BEGIN = "BEGIN IMMEDIATE"
_PREBUFFERED: Mapping[str, Any] = {"prebuffer_rows": True}


class InlineSession(AsyncSession):
    """An ``AsyncSession`` over a sync ``Session`` bound to a ``sqlite3`` engine, whose calls
    are made at once (see the module's notes). Rows are fetched whole, as ``AsyncSession``'s
    are. ``begin_immediate`` and ``commit`` replace ``begin()`` for a unit of work."""

    def __init__(
        self,
        engine: Engine,
        *,
        busy_seconds: float,
        sync_session_class: type[Session],
        **options: Any,
    ) -> None:
        super().__init__(sync_session_class=sync_session_class, **options)
        self.sync_session.bind = engine
        self._busy_seconds = busy_seconds

    async def execute(
        self,
        statement: Any,
        params: Any = None,
        *,
        execution_options: Mapping[str, Any] | None = None,
        **kw: Any,
    ) -> Any:
        options = _PREBUFFERED if not execution_options else {**execution_options, **_PREBUFFERED}
        run = self.sync_session.execute
        return await patiently(
            lambda: run(statement, params, execution_options=options, **kw), self._busy_seconds
        )

    async def scalar(self, statement: Any, params: Any = None, **kw: Any) -> Any:
        return (await self.execute(statement, params, **kw)).scalar()

    async def scalars(self, statement: Any, params: Any = None, **kw: Any) -> Any:
        return (await self.execute(statement, params, **kw)).scalars()

    async def get(self, entity: Any, ident: Any, **kw: Any) -> Any:
        get = self.sync_session.get
        return await patiently(lambda: get(entity, ident, **kw), self._busy_seconds)

    async def flush(self, objects: Any = None) -> None:
        self.sync_session.flush(objects)

    async def refresh(self, instance: object, *args: Any, **kw: Any) -> None:
        self.sync_session.refresh(instance, *args, **kw)

    async def begin_immediate(self) -> None:
        """Begin the unit of work's transaction with SQLite's write lock, waiting (the loop
        running) while another connection holds it."""
        driver = self.sync_session.connection().connection.driver_connection
        assert isinstance(driver, sqlite3.Connection)
        try:
            await patiently(lambda: driver.execute(BEGIN), self._busy_seconds)
        except sqlite3.OperationalError as exc:  # as SQLAlchemy raises a statement's error
            raise OperationalError(BEGIN, None, exc) from exc

    async def commit(self) -> None:
        self.sync_session.commit()

    async def rollback(self) -> None:
        self.sync_session.rollback()

    async def close(self) -> None:
        self.sync_session.close()

    async def __aexit__(self, *_: object) -> None:
        self.sync_session.close()
