"""Wake-ups for long polls: an agent waiting for work, a reader following a log.

Every change a waiter waits for is signalled by the unit of work that commits it: in this process
through the store's subscribers, in another server process on the same PostgreSQL database
through the store's signal channel (``store/channel.py``), which hands them to ``deliver`` here
too. So a waiter sleeps until it is woken or its own time is up, and does not look at the
database in between: an agent's claim waits its whole ``wait_seconds``, a log follower a second
(it sends a page at least every second). Events live only while someone waits on them (weak
references), so keys of ended tasks do not pile up.

When signals may have been missed (the channel lost its connection and listens again),
``wake_all`` wakes every waiter and tells the listeners ``EVERYTHING``: each looks at the database
once more rather than sleeping through work that is already there.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Hashable, Sequence
from weakref import WeakValueDictionary

from slotpool.domain.signals import Signal

EVERYTHING = "*"  # the key listeners are told when anything may have changed (``wake_all``)


class Notifier:
    def __init__(self) -> None:
        self._events: WeakValueDictionary[Hashable, asyncio.Event] = WeakValueDictionary()
        self._listeners: list[Callable[[Hashable], None]] = []

    def wake(self, key: Hashable) -> None:
        event = self._events.get(key)
        if event is not None:
            event.set()
        for listener in self._listeners:
            listener(key)

    def wake_all(self) -> None:
        """Signals may have been missed: every waiter looks again, and every listener is told
        ``EVERYTHING``."""
        for event in list(self._events.values()):
            event.set()
        for listener in self._listeners:
            listener(EVERYTHING)

    def deliver(self, signals: Sequence[Signal]) -> None:
        """The store's subscriber: the signals of a unit of work that committed."""
        for signal in signals:
            self.wake(signal)

    def listen(self, listener: Callable[[Hashable], None]) -> None:
        """Also call ``listener`` with every key woken (the controller's pool wake-ups)."""
        self._listeners.append(listener)

    def arm(self, key: Hashable) -> asyncio.Event:
        """Call before looking at the database, so a wake-up in between is not missed; keep the
        returned event and pass it to ``wait``."""
        event = self._events.get(key)
        if event is None:
            event = self._events[key] = asyncio.Event()
        event.clear()
        return event

    @staticmethod
    async def wait(event: asyncio.Event, seconds: float) -> None:
        """Until ``event`` is woken, or for ``seconds`` at most."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(event.wait(), seconds)
