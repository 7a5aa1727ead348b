"""Locks several server processes share on one PostgreSQL database: session advisory locks.

``AdvisoryLocks.hold(name)`` takes ``pg_advisory_lock`` of a key made from ``name`` on a
connection of its own, and keeps that connection while the holder acts: a lock a server process
holds across its Kubernetes calls and several units of work, which a transaction-level lock
cannot span. A holder that goes away must not keep it for good:

* one that dies (SIGKILL, a crash): its connection closes, PostgreSQL ends the session, and the
  session's locks go with it;
* one that stops answering with its connection still open (SIGSTOP, a frozen VM): while it holds
  the lock, its session has ``idle_session_timeout`` set to ``hold_seconds`` (the leader's lease),
  and a live holder runs ``SELECT 1`` on it every third of that. A paused holder runs nothing:
  PostgreSQL ends its idle session after ``hold_seconds`` and the lock is free. (A resumed
  holder finds its connection gone, logs that it lost the lock, and does not lock again until its
  next ``hold``.)

Connections are opened on demand (as many as locks are held at once) and a few are kept between
holds, with the timeout reset, so that a pool's controller pass every second costs two round
trips (lock, unlock), not a connection each.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections.abc import AsyncIterator

import psycopg
import structlog

from slotpool.store.db import own_connection

log = structlog.get_logger(__name__)

KEEP_IDLE = 4  # connections kept between holds
Connection = psycopg.AsyncConnection[tuple[object, ...]]


def lock_key(name: str) -> int:
    """The advisory lock's 64-bit key for ``name`` (two names sharing one only wait for each
    other more than they need)."""
    digest = hashlib.blake2b(name.encode(), digest_size=8, person=b"slotpool-lock").digest()
    return int.from_bytes(digest, "big", signed=True)


class AdvisoryLocks:
    def __init__(self, url: str, *, hold_seconds: float) -> None:
        self._url = url
        self._timeout_ms = max(int(hold_seconds * 1000), 1)
        self._keepalive_seconds = hold_seconds / 3
        self._idle: list[Connection] = []

    @contextlib.asynccontextmanager
    async def hold(self, name: str) -> AsyncIterator[None]:
        """Held (waiting as long as another session holds it) until the block is left."""
        key = lock_key(name)
        connection = await self._locked(key)
        alive = asyncio.get_running_loop().create_task(self._keep_alive(connection, name))
        try:
            yield
        finally:
            alive.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await alive
            await self._unlock(connection, key)

    async def _locked(self, key: int) -> Connection:
        lock = "SELECT pg_advisory_lock(%s), set_config('idle_session_timeout', %s, false)"
        while True:
            reused = bool(self._idle)
            connection = self._idle.pop() if reused else await self._connect()
            try:
                await connection.execute(lock, (key, str(self._timeout_ms)))
                return connection
            except psycopg.OperationalError:
                await _discard(connection)
                if not reused:
                    raise
                # A kept connection that PostgreSQL closed meanwhile (a restart): a new one.
            except BaseException:
                # Cancelled while waiting, or refused: the lock may have been granted just
                # now, and a closed session holds nothing.
                await _discard(connection)
                raise

    async def _unlock(self, connection: Connection, key: int) -> None:
        unlock = "SELECT pg_advisory_unlock(%s), set_config('idle_session_timeout', '0', false)"
        try:
            await connection.execute(unlock, (key,))
        except psycopg.Error:
            await _discard(connection)  # its session ends (or has ended), and the lock with it
            return
        except BaseException:
            await _discard(connection)
            raise
        if len(self._idle) < KEEP_IDLE:
            self._idle.append(connection)
        else:
            await _discard(connection)

    async def _keep_alive(self, connection: Connection, name: str) -> None:
        while True:
            await asyncio.sleep(self._keepalive_seconds)
            try:
                await connection.execute("SELECT 1")
            except psycopg.Error as exc:
                log.warning("lost a lock held in the database", lock=name, error=str(exc))
                return

    async def _connect(self) -> Connection:
        return await own_connection(self._url)

    async def close(self) -> None:
        idle, self._idle = self._idle, []
        for connection in idle:
            await _discard(connection)


async def _discard(connection: Connection) -> None:
    with contextlib.suppress(psycopg.Error, OSError):
        await connection.close()
