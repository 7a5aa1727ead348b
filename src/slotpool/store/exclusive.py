"""One server per SQLite database: an exclusive lock on ``<database file>.lock``.

SQLite is one machine's database, and slotpool's controller on it one process's: a second server
on the same file would run a second controller beside the first. So a server takes an exclusive
``flock`` on the lock file before it does anything (before migrations, before its banner) and
holds it for its life, its pid, host, URL and start written in the file; a second one finds the
lock taken and refuses to start, naming the first from what the file says. The kernel lets the
lock go when the process ends, however it ends, so a crashed server never blocks the next one.

Within one process the lock is counted: the CLI takes it for the process's life, and the app's
lifespan takes it again (tests open apps in-process, one after another on one database).
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy.engine import make_url

from slotpool.hardening import private_directory
from slotpool.store.db import backend


class DatabaseInUse(Exception):
    """Another server process holds the database; the message names it."""


@dataclass
class _Held:
    fd: int
    count: int


_HELD: dict[Path, _Held] = {}


def lock_path(database_url: str) -> Path | None:
    """The lock file of an SQLite database file; None for PostgreSQL or an in-memory one."""
    if backend(database_url) != "sqlite":
        return None
    database = make_url(database_url).database
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    path = Path(database).expanduser().absolute()
    return path.with_name(path.name + ".lock")


def hold_database(database_url: str, *, url: str) -> Path | None:
    """Take the database's lock for this process (``DatabaseInUse`` if another holds it); the
    lock file's path, None where there is none (PostgreSQL). ``url``: where this server
    answers, for the message a second one prints."""
    path = lock_path(database_url)
    if path is None:
        return None
    held = _HELD.get(path)
    if held is not None:
        held.count += 1
        return path
    if not path.parent.exists():
        private_directory(path.parent)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = _holder(fd)
        os.close(fd)
        raise DatabaseInUse(
            f"another slotpool server uses the database {path.with_suffix('')}: {holder}. "
            "Stop it first, or give this one another SLOTPOOL_DATA_DIR or "
            "SLOTPOOL_DATABASE_URL (several servers on one database need PostgreSQL)"
        ) from None
    os.ftruncate(fd, 0)
    since = datetime.now(UTC).replace(microsecond=0).isoformat()
    record = {"pid": os.getpid(), "host": socket.gethostname(), "url": url, "since": since}
    os.pwrite(fd, (json.dumps(record) + "\n").encode(), 0)
    _HELD[path] = _Held(fd, 1)
    return path


def release_database(path: Path | None) -> None:
    """Give back one hold of ``hold_database``; the lock goes with the last."""
    held = None if path is None else _HELD.get(path)
    if path is None or held is None:
        return
    held.count -= 1
    if held.count == 0:
        del _HELD[path]
        os.close(held.fd)  # closing the file releases the lock


def _holder(fd: int) -> str:
    try:
        record = json.loads(os.pread(fd, 4096, 0).decode())
        return f"pid {record['pid']} on {record['host']}, {record['url']}, since {record['since']}"
    except (OSError, ValueError, KeyError, TypeError):
        return "its details could not be read"
