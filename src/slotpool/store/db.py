"""Engines for SQLite and PostgreSQL; every difference between the two databases lives here.

Operators write plain URLs (``sqlite:///path``, ``postgresql://...``); SQLAlchemy needs a driver
named in them, sync (migrations) or async (the server): psycopg 3 for PostgreSQL serves both.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

_SQLITE_PRAGMAS = (
    "PRAGMA journal_mode=WAL",
    "PRAGMA foreign_keys=ON",
    "PRAGMA busy_timeout=10000",
    "PRAGMA synchronous=NORMAL",
)


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
    kind = backend(url)
    driver = "postgresql+psycopg" if kind == "postgresql" else "sqlite+aiosqlite"
    return make_url(url).set(drivername=driver).render_as_string(hide_password=False)


def ensure_sqlite_directory(url: str) -> None:
    """The default database sits in the user's data directory, which may not exist yet."""
    if backend(url) == "sqlite":
        database = make_url(url).database
        if database and database != ":memory:":
            Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)


def apply_sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    for pragma in _SQLITE_PRAGMAS:
        cursor.execute(pragma)
    cursor.close()


def create_engine(url: str, *, pool_size: int = 10) -> AsyncEngine:
    ensure_sqlite_directory(url)
    if backend(url) == "sqlite":
        engine = create_async_engine(async_url(url))
        event.listen(engine.sync_engine, "connect", apply_sqlite_pragmas)
        return engine
    return create_async_engine(
        async_url(url), pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=True
    )
