"""Engines for SQLite and PostgreSQL; every difference between the two databases lives here.

Operators write plain URLs (``sqlite:///path``, ``postgresql://...``); SQLAlchemy needs a driver
named in them, sync (migrations) or async (the server): psycopg 3 for PostgreSQL serves both.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import psycopg
from sqlalchemy import Engine, event
from sqlalchemy import create_engine as sa_create_engine
from sqlalchemy.dialects.sqlite.pysqlite import SQLiteDialect_pysqlite
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from slotpool.hardening import narrow_if_exists, private_directory, private_file
from slotpool.store.inline_sqlite import connect

BUSY_SECONDS = 10  # how long a statement waits for another connection's write lock
# The server's connections wait for a lock in ``inline_sqlite``, the event loop running
# meanwhile, never in SQLite's busy handler: no busy timeout for them.
_SERVER_PRAGMAS = (
    "PRAGMA journal_mode=WAL",
    "PRAGMA foreign_keys=ON",
    "PRAGMA synchronous=NORMAL",
)
_SQLITE_PRAGMAS = (*_SERVER_PRAGMAS, f"PRAGMA busy_timeout={BUSY_SECONDS * 1000}")


SQLITE_COMPANIONS = ("-wal", "-shm", "-journal")
POOL_RECYCLE_SECONDS = 1800


class UnsupportedDatabase(ValueError):
    pass


def backend(url: str) -> str:
    name = make_url(url).get_backend_name()
    if name in ("postgres", "postgresql"):
        return "postgresql"
    if name == "sqlite":
        return "sqlite"
    raise UnsupportedDatabase(
        f"unsupported database URL scheme {name!r}: use sqlite:///PATH or postgresql://..."
    )


def sync_url(url: str) -> str:
    kind = backend(url)
    driver = "postgresql+psycopg" if kind == "postgresql" else "sqlite"
    return make_url(url).set(drivername=driver).render_as_string(hide_password=False)


def async_url(url: str) -> str:
    """PostgreSQL's URL for the async engine (SQLite's server engine is sync: ``inline_sqlite``)."""
    return make_url(url).set(drivername="postgresql+psycopg").render_as_string(hide_password=False)


def libpq_url(url: str) -> str:
    """A PostgreSQL URL as libpq (psycopg's own connections: the signal channel, the pools'
    locks) takes it: without SQLAlchemy's driver name."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


async def own_connection(url: str) -> psycopg.AsyncConnection[tuple[object, ...]]:
    """A PostgreSQL connection of its own, outside the engine's pool, in autocommit (the
    signal channel's, a held lock's). A connection cut without a word (a network partition) is
    found out by TCP keepalives within about 25 s."""
    return await psycopg.AsyncConnection.connect(
        libpq_url(url),
        autocommit=True,
        keepalives=1,
        keepalives_idle=10,
        keepalives_interval=5,
        keepalives_count=3,
    )


def ensure_sqlite_file(url: str) -> None:
    """An SQLite database holds every task's env: only the server's user may read it. Its
    directory, if missing, is made 0700; the file is made 0600 before SQLite opens it (SQLite
    gives its -wal, -shm and -journal files the mode of the database file), and an existing one
    and its companions are narrowed to 0600."""
    if backend(url) != "sqlite":
        return
    database = make_url(url).database
    if not database or database == ":memory:" or database.startswith("file:"):
        return
    path = Path(database).expanduser()
    if not path.parent.exists():
        private_directory(path.parent)
    private_file(path)
    for suffix in SQLITE_COMPANIONS:
        narrow_if_exists(path.with_name(path.name + suffix))


def apply_sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    _apply(dbapi_connection, _SQLITE_PRAGMAS)


def _apply_server_pragmas(dbapi_connection: Any, _record: Any) -> None:
    _apply(dbapi_connection, _SERVER_PRAGMAS)


def _apply(dbapi_connection: Any, pragmas: tuple[str, ...]) -> None:
    cursor = dbapi_connection.cursor()
    for pragma in pragmas:
        cursor.execute(pragma)
    cursor.close()


def create_sqlite_engine(url: str) -> Engine:
    """The server's SQLite engine: sync, its sessions' calls made in the event loop's thread
    (``inline_sqlite.InlineSession``)."""
    ensure_sqlite_file(url)
    args, kwargs = SQLiteDialect_pysqlite().create_connect_args(make_url(sync_url(url)))
    # Statements are logged when debugging (``logs``), never their values. A checkout never
    # waits (unbounded overflow): a wait here would block the event loop, whose tasks are the
    # ones holding the connections. Few are out at once anyway, since a statement does not
    # suspend its unit of work.
    engine = sa_create_engine(
        sync_url(url),
        hide_parameters=True,
        creator=connect(args, kwargs),
        pool_size=5,
        max_overflow=-1,
    )
    event.listen(engine, "connect", _apply_server_pragmas)
    return engine


def create_engine(
    url: str, *, pool_size: int = 10, idle_in_transaction_seconds: float | None = None
) -> AsyncEngine:
    """The server's PostgreSQL engine. ``idle_in_transaction_seconds``: the server ends a
    session whose transaction waits that long for its client, so that a paused process
    (SIGSTOP, a frozen VM) does not keep its row locks for good: a paused leader's fenced unit
    of work holds the lease row ``FOR SHARE``, which would keep every other replica from being
    elected."""
    if backend(url) != "postgresql":
        raise UnsupportedDatabase("the async engine is PostgreSQL's (SQLite: create_sqlite_engine)")
    # Statements are logged when debugging (``logs``), never their values: a task's
    # environment and token digests are among them.
    # No ``pool_pre_ping``: it costs a round trip before every unit of work. A connection that
    # PostgreSQL cut (a restart, a failover) is found out when next used: SQLAlchemy then drops
    # every connection of the pool, so that one unit of work fails and the next connect afresh.
    # ``pool_recycle`` replaces connections before a server or network idle timeout cuts them.
    connect_args: dict[str, str] = {}
    if idle_in_transaction_seconds is not None:
        timeout_ms = max(int(idle_in_transaction_seconds * 1000), 1)
        connect_args["options"] = f"-c idle_in_transaction_session_timeout={timeout_ms}"
    return create_async_engine(
        async_url(url),
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_recycle=POOL_RECYCLE_SECONDS,
        hide_parameters=True,
        connect_args=connect_args,
    )
