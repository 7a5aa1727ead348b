"""A new, empty database of either backend for one benchmark run: SQLite in a temporary
directory, or a database on a throwaway PostgreSQL server (``tests.support.postgres``), with
what decides its cost written down (its version; PostgreSQL's durability settings)."""

from __future__ import annotations

import contextlib
import sqlite3
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field

import psycopg
from tests.support import processes
from tests.support.postgres import PostgresServer

from slotpool.store.migrate import upgrade

BACKENDS = ("sqlite", "postgresql")
# Reported with the results: they decide what a commit costs.
PG_SETTINGS = ("server_version", "fsync", "synchronous_commit", "full_page_writes")


@dataclass
class Database:
    backend: str
    url: str
    settings: dict[str, str] = field(default_factory=dict)
    postmaster: int | None = None  # PostgreSQL's, when it runs here: its CPU can be read

    def durability(self, writes: str = "") -> str:
        """PostgreSQL's line: where it runs, its settings, and what they mean for commits
        (``writes``: which of the figures are writes, in parentheses)."""
        s = self.settings
        waits = s.get("fsync") != "off" and s.get("synchronous_commit") != "off"
        return (
            f"PostgreSQL {s.get('server_version', '?')} on 127.0.0.1 (TCP), "
            f"fsync={s.get('fsync')}, "
            f"synchronous_commit={s.get('synchronous_commit')}, "
            f"full_page_writes={s.get('full_page_writes')}. "
            + ("Commits wait for the disk." if waits else
               f"A commit does not wait for the disk, so the write numbers{writes} are optimistic.")
        )  # fmt: skip


@contextlib.contextmanager
def database(backend: str, *, migrate: bool = False) -> Iterator[Database]:
    """A new database of ``backend``; migrated first with ``migrate``; gone afterwards."""
    if backend == "sqlite":
        with tempfile.TemporaryDirectory(prefix="slotpool-bench-db-") as tmp:
            found = Database(backend, f"sqlite:///{tmp}/slotpool.db")
            found.settings["version"] = sqlite3.sqlite_version
            if migrate:
                upgrade(found.url)
            yield found
        return
    server = PostgresServer.start()
    try:
        with server.temporary_database() as url:
            found = Database(backend, url)
            with psycopg.connect(url) as conn:
                for setting in PG_SETTINGS:
                    row = conn.execute(f"SHOW {setting}").fetchone()
                    found.settings[setting] = str(row[0]) if row else "?"
                row = conn.execute("SELECT pg_backend_pid()").fetchone()
            # None when the server runs elsewhere (SLOTPOOL_TEST_PG_URL): its CPU is not seen.
            found.postmaster = processes.parent_pid(int(row[0])) if row else None
            if migrate:
                upgrade(url)
            yield found
    finally:
        server.stop()
