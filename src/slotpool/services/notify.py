"""In-process wake-ups for long polls: an agent waiting for work, a reader following a log.

A wake-up only shortens a wait; every waiter also looks again after at most a second, so several
server processes sharing one database still make progress without a message bus.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import defaultdict
from collections.abc import Hashable

RECHECK_SECONDS = 1.0


class Notifier:
    def __init__(self) -> None:
        self._events: defaultdict[Hashable, asyncio.Event] = defaultdict(asyncio.Event)

    def wake(self, key: Hashable) -> None:
        self._events[key].set()

    def arm(self, key: Hashable) -> None:
        """Call before looking at the database, so a wake-up in between is not missed."""
        self._events[key].clear()

    async def wait(self, key: Hashable, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._events[key].wait(), min(seconds, RECHECK_SECONDS))

    def forget(self, key: Hashable) -> None:
        event = self._events.pop(key, None)
        if event is not None:
            event.set()  # whoever still waits looks once more and sees the end
