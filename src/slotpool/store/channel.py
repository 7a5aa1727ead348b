"""Signals between server processes on one PostgreSQL database: ``LISTEN``/``NOTIFY``.

A unit of work hands its signals to the store's subscribers once it has committed (``uow.py``).
In a process of its own that is all there is; when several server processes share a PostgreSQL
database, a task submitted through one must wake the agent long-polling on another, and a change
made anywhere must wake the controller wherever it runs. ``SignalChannel`` carries them:

* ``publish`` is a store subscriber: it only queues the signals. A task of its own sends what has
  queued with ``pg_notify`` on a connection of its own, right after the commit, as few payloads as
  fit (PostgreSQL refuses one of 8000 bytes or more): a burst of commits costs one statement, and
  the request that committed waits for nothing. The price: a process that dies between its commit
  and its notification loses that wake-up. Each one has a fallback that runs anyway (a claim's
  own time runs out and the agent claims again, the sweeper dispatches every pool with queued
  tasks, each controller worker passes every resync), so it is a delay, never a loss of work.
  (Notifying inside the committing transaction would be atomic, but costs every unit of work that
  signals one more statement on the request path, and one notification per commit.)
* A second connection ``LISTEN``s, and hands what other processes sent to ``deliver`` (the
  notifier's): each payload names the channel that sent it, and a channel ignores its own (this
  process has delivered them already, when they committed).
* A lost connection (PostgreSQL restarted, the session was terminated) is opened again, 0.2 s
  after the loss, doubling up to 5 s. Whatever was sent meanwhile was not heard: once listening
  again, ``missed`` is called (the notifier's ``wake_all``), so nobody sleeps through work that
  arrived in between.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Callable, Iterable, Sequence

import psycopg
import structlog

from slotpool.domain.signals import Signal
from slotpool.store.db import own_connection

log = structlog.get_logger(__name__)

CHANNEL = "slotpool_signals"
# PostgreSQL refuses a payload of 8000 bytes or more; the rest of the margin is the header.
PAYLOAD_BYTES = 7900
RETRY_SECONDS = 0.2
RETRY_MAX_SECONDS = 5.0
# A connection cut without a word (a network partition) is found out by TCP keepalives.
KEEPALIVES = {
    "keepalives": 1,
    "keepalives_idle": 10,
    "keepalives_interval": 5,
    "keepalives_count": 3,
}


def payloads(origin: str, signals: Iterable[Signal]) -> list[str]:
    """``signals`` as payloads of at most ``PAYLOAD_BYTES`` bytes: the sender's ``origin`` on the
    first line, then one encoded signal a line."""
    found: list[str] = []
    lines: list[str] = []
    size = len(origin.encode())
    for signal in signals:
        line = signal.encode()
        length = len(line.encode()) + 1
        if lines and size + length > PAYLOAD_BYTES:
            found.append("\n".join([origin, *lines]))
            lines, size = [], len(origin.encode())
        lines.append(line)
        size += length
    if lines:
        found.append("\n".join([origin, *lines]))
    return found


def parse(payload: str) -> tuple[str, list[Signal]]:
    """The origin and the signals of a payload; lines that are not a signal (a newer version's
    topic) are skipped."""
    origin, *lines = payload.split("\n")
    signals: list[Signal] = []
    for line in lines:
        with contextlib.suppress(ValueError):
            signals.append(Signal.decode(line))
    return origin, signals


class SignalChannel:
    """Committed signals to the other server processes on the database, theirs to ``deliver``."""

    def __init__(
        self,
        url: str,
        *,
        deliver: Callable[[Sequence[Signal]], None],
        missed: Callable[[], None],
        origin: str | None = None,
    ) -> None:
        self._url = url
        self._deliver = deliver
        self._missed = missed
        self.origin = origin or uuid.uuid4().hex[:16]
        self._pending: dict[Signal, None] = {}
        self._queued = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._listener: psycopg.AsyncConnection[tuple[object, ...]] | None = None
        self._sender: psycopg.AsyncConnection[tuple[object, ...]] | None = None
        self.listening = asyncio.Event()  # set while the listening connection is up

    async def start(self) -> None:
        """Listening (an error if the database cannot be reached), and sending from now on."""
        self._listener = await self._listen()
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._hear_forever()),
            loop.create_task(self._send_forever()),
        ]

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        for connection in (self._listener, self._sender):
            if connection is not None:
                await connection.close()
        self._listener = self._sender = None

    # -- sending -------------------------------------------------------------------------------

    def publish(self, signals: Sequence[Signal]) -> None:
        """The store's subscriber: queued, and sent by the channel's own task."""
        self._pending.update(dict.fromkeys(signals))
        self._queued.set()

    async def _send_forever(self) -> None:
        while True:
            await self._queued.wait()
            self._queued.clear()
            batch, self._pending = self._pending, {}
            for payload in payloads(self.origin, batch):
                await self._send(payload)

    async def _send(self, payload: str) -> None:
        """Sent, on a connection opened again once if it was lost; otherwise logged and left
        (the fallbacks of the module's docstring make up for it)."""
        for attempt in (1, 2):
            try:
                if self._sender is None:
                    self._sender = await own_connection(self._url)
                await self._sender.execute("SELECT pg_notify(%s, %s)", (CHANNEL, payload))
                return
            except psycopg.OperationalError as exc:
                await _close_quietly(self._sender)
                self._sender = None
                if attempt == 2:
                    log.warning("signals not sent to other server processes", error=str(exc))

    # -- listening -----------------------------------------------------------------------------

    async def _listen(self) -> psycopg.AsyncConnection[tuple[object, ...]]:
        connection = await own_connection(self._url)
        try:
            await connection.execute(f"LISTEN {CHANNEL}")
        except BaseException:
            await _close_quietly(connection)
            raise
        self.listening.set()
        return connection

    async def _hear_forever(self) -> None:
        delay = RETRY_SECONDS
        while True:
            try:
                if self._listener is None:
                    self._listener = await self._listen()
                    log.info("listening to other server processes again")
                    delay = RETRY_SECONDS
                    self._missed()  # what was sent meanwhile went unheard
                async for note in self._listener.notifies():
                    self._heard(note.payload)
            except (psycopg.Error, OSError) as exc:
                if self._listener is not None:
                    log.warning("lost the signals of other server processes", error=str(exc))
            self.listening.clear()
            await _close_quietly(self._listener)
            self._listener = None
            await asyncio.sleep(delay)
            delay = min(delay * 2, RETRY_MAX_SECONDS)

    def _heard(self, payload: str) -> None:
        origin, signals = parse(payload)
        if origin != self.origin and signals:
            try:
                self._deliver(signals)
            except Exception:  # logged: the channel goes on listening
                log.exception("delivering signals of another server process failed")


async def _close_quietly(connection: psycopg.AsyncConnection[tuple[object, ...]] | None) -> None:
    if connection is not None:
        with contextlib.suppress(psycopg.Error, OSError):
            await connection.close()
