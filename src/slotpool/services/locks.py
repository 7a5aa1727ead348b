"""One change to a pool's Pods at a time, in this process: a controller pass, a pool's deletion
and a rotation of its Secret's token each hold the pool's lock while they act on the runtime.

(Several server processes on one database do not share it; a later change moves it into the
database.)
"""

from __future__ import annotations

import asyncio
from collections import defaultdict


class PoolLocks:
    def __init__(self) -> None:
        self._locks: defaultdict[str, asyncio.Lock] = defaultdict(asyncio.Lock)

    def of(self, pool_id: str) -> asyncio.Lock:
        """The pool's lock: ``async with locks.of(pool_id): ...``."""
        return self._locks[pool_id]
