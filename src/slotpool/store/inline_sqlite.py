"""SQLite for the async engine without a thread: the connection aiosqlite would give SQLAlchemy,
with its calls made right where they are awaited, in the event loop's thread.

aiosqlite runs every call (a cursor, an execute, a fetch, a cursor's close, a commit) on a
worker thread of its own and hands the result back through the event loop: per statement four
trips between two threads that take turns on the interpreter lock, each a queue wake-up, a
write to the loop's self-pipe and a pass of the loop. On the server's SQLite database (a local
file, WAL) a statement itself takes microseconds, and the trips cost far more than it: under
the dispatch benchmark they were the largest single item of the server's CPU (kernel time
included). Here each call is made at once and returns a coroutine that has already finished:
SQLAlchemy's aiosqlite adapter drives it unchanged (``create_async_engine(async_creator=...)``),
so sessions, pools, errors and the dialect stay those of ``sqlite+aiosqlite``.

What a call blocks meanwhile is the event loop, for as long as SQLite takes: short, since this
process is the only server on its database (``store.exclusive``), its units of work take turns
as SQLite's one writer (``uow.Store``) and readers never wait in WAL mode. A write that finds the
database locked all the same (another connection's open write: a second ``Store``, an
operator's ``sqlite3`` shell) must not sleep in SQLite's busy handler, which would stop the
whole server, the lock's holder included when it is this process: the connections run with
SQLite's busy timeout at 0 and the wait is here, ``asyncio.sleep`` between tries, up to
``busy_seconds``, as SQLite's handler would (same growing pauses). What still blocks the loop:
the commit that passes SQLite's WAL auto-checkpoint (1,000 pages) copies the log into the
database and syncs it, once every few thousand small commits; on a slow disk that is a pause of
every request for as long, where it used to hold up that one commit.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, TypeVar

T = TypeVar("T")

# Locked by another connection: worth another try. Not SQLITE_BUSY_SNAPSHOT (517), a transaction
# whose snapshot is older than the last commit, which no wait can help (SQLite does not retry it
# either).
RETRIED = frozenset({sqlite3.SQLITE_BUSY, 261})  # 261: SQLITE_BUSY_RECOVERY
PAUSES = (0.001, 0.002, 0.005, 0.01, 0.015, 0.02, 0.025, 0.025, 0.025, 0.05, 0.05, 0.1)  # SQLite's


def busy(exc: sqlite3.OperationalError) -> bool:
    """Whether the statement failed only because another connection holds the lock."""
    return getattr(exc, "sqlite_errorcode", None) in RETRIED


async def patiently(call: Callable[[], T], busy_seconds: float) -> T:
    """``call()``, tried again while the database is locked by another connection, for up to
    ``busy_seconds``; the event loop runs meanwhile."""
    waited = 0.0
    tries = 0
    while True:
        try:
            return call()
        except sqlite3.OperationalError as exc:
            if not busy(exc) or waited >= busy_seconds:
                raise
        pause = min(PAUSES[min(tries, len(PAUSES) - 1)], busy_seconds - waited)
        await asyncio.sleep(pause)
        waited += pause
        tries += 1


class InlineCursor:
    """An aiosqlite ``Cursor`` whose coroutines finish without suspending."""

    __slots__ = ("_busy_seconds", "_cursor")

    def __init__(self, cursor: sqlite3.Cursor, busy_seconds: float) -> None:
        self._cursor = cursor
        self._busy_seconds = busy_seconds

    async def __aenter__(self) -> InlineCursor:
        return self

    async def __aexit__(self, *_: object) -> None:
        self._cursor.close()

    async def execute(self, sql: str, parameters: Any = ()) -> InlineCursor:
        try:
            self._cursor.execute(sql, parameters)
        except sqlite3.OperationalError as exc:
            if not busy(exc):
                raise
            await patiently(lambda: self._cursor.execute(sql, parameters), self._busy_seconds)
        return self

    async def executemany(self, sql: str, parameters: Iterable[Any]) -> InlineCursor:
        rows = list(parameters)  # a second try needs them again
        await patiently(lambda: self._cursor.executemany(sql, rows), self._busy_seconds)
        return self

    async def fetchone(self) -> Any:
        return self._cursor.fetchone()

    async def fetchmany(self, size: int | None = None) -> list[Any]:
        return self._cursor.fetchmany(self._cursor.arraysize if size is None else size)

    async def fetchall(self) -> list[Any]:
        return self._cursor.fetchall()

    async def close(self) -> None:
        self._cursor.close()

    def __aiter__(self) -> InlineCursor:
        return self

    async def __anext__(self) -> Any:
        row = self._cursor.fetchone()
        if row is None:
            raise StopAsyncIteration
        return row

    @property
    def description(self) -> Any:
        return self._cursor.description

    @property
    def rowcount(self) -> int:
        return self._cursor.rowcount

    @property
    def lastrowid(self) -> int | None:
        return self._cursor.lastrowid

    @property
    def arraysize(self) -> int:
        return self._cursor.arraysize

    @arraysize.setter
    def arraysize(self, value: int) -> None:
        self._cursor.arraysize = value


class _Now:
    """aiosqlite's queue of calls for its thread, which SQLAlchemy's adapter also uses directly
    (to set the isolation level): the call is made at once and its future resolved."""

    def put_nowait(self, item: tuple[asyncio.Future[Any] | None, Callable[[], Any]]) -> None:
        future, function = item
        try:
            result = function()
        except BaseException as exc:  # handed to whoever awaits the future, as aiosqlite does
            if future is None:
                raise
            future.set_exception(exc)
        else:
            if future is not None:
                future.set_result(result)


class InlineConnection:
    """An aiosqlite ``Connection`` as SQLAlchemy's adapter uses it, over a ``sqlite3``
    connection called in the caller's thread."""

    def __init__(self, connection: sqlite3.Connection, busy_seconds: float) -> None:
        self._connection: sqlite3.Connection | None = connection
        self._busy_seconds = busy_seconds
        self._tx = _Now()

    @property
    def _conn(self) -> sqlite3.Connection:
        if self._connection is None:
            raise ValueError("no active connection")
        return self._connection

    def cursor(self) -> InlineCursor:
        return InlineCursor(self._conn.cursor(), self._busy_seconds)

    async def execute(self, sql: str, parameters: Any = ()) -> InlineCursor:
        return await self.cursor().execute(sql, parameters)

    async def commit(self) -> None:
        await patiently(self._conn.commit, self._busy_seconds)

    async def rollback(self) -> None:
        self._conn.rollback()

    async def create_function(self, *args: Any, **kwargs: Any) -> None:
        self._conn.create_function(*args, **kwargs)

    async def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    def stop(self) -> None:
        """Close at once (SQLAlchemy's ``terminate`` of a connection it gives up on)."""
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    @property
    def in_transaction(self) -> bool:
        return self._conn.in_transaction

    @property
    def isolation_level(self) -> str | None:
        return self._conn.isolation_level

    @isolation_level.setter
    def isolation_level(self, value: Any) -> None:
        self._conn.isolation_level = value

    @property
    def total_changes(self) -> int:
        return self._conn.total_changes


def inline_creator(
    args: Sequence[Any], kwargs: Mapping[str, Any], *, busy_seconds: float
) -> Callable[[], Any]:
    """The ``async_creator`` of an async engine whose connections are ``InlineConnection``s
    over ``sqlite3.connect(*args, **kwargs)``, waiting up to ``busy_seconds`` for a lock (with
    SQLite's own busy timeout at 0: no ``PRAGMA busy_timeout`` on these connections)."""

    async def connect() -> InlineConnection:
        # timeout=0: SQLite's busy handler never sleeps (``patiently`` waits instead).
        options = {**kwargs, "check_same_thread": False, "timeout": 0}
        connection = sqlite3.connect(*args, **options)
        return InlineConnection(connection, busy_seconds)

    return connect
