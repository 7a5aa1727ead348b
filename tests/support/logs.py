"""A big task log written straight through the store, and its digest (the API and the CLI are
expected to give it back whole)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from slotpool.clock import utc_now
from slotpool.store.uow import Store

CHUNK = 65_536  # characters: what an agent sends at most (64 KiB of output)
CHUNKS_68_MB = 1088  # 1088 x 64 KiB = 68 MiB


@dataclass(frozen=True)
class WrittenLog:
    size: int  # bytes, UTF-8
    sha256: str


def chunk_text(index: int) -> str:
    """Chunk ``index``: numbered (a lost or reordered chunk changes the digest), with brackets
    and characters of two and three bytes."""
    line = f"{index:06d} [/bold] [red]x[/red] é € ok\n"
    return (line * (CHUNK // len(line) + 1))[:CHUNK]


async def write_log(database_url: str, task_id: str, *, chunks: int = CHUNKS_68_MB) -> WrittenLog:
    digest, size = hashlib.sha256(), 0
    store = Store(database_url)
    try:
        for first in range(0, chunks, 64):
            async with store.unit_of_work() as uow:
                for seq in range(first, min(first + 64, chunks)):
                    data = chunk_text(seq)
                    await uow.tasks.add_log(task_id, step=0, seq=seq, data=data, now=utc_now())
                    encoded = data.encode()
                    digest.update(encoded)
                    size += len(encoded)
    finally:
        await store.close()
    return WrittenLog(size, digest.hexdigest())


def written(text: str) -> WrittenLog:
    encoded = text.encode()
    return WrittenLog(len(encoded), hashlib.sha256(encoded).hexdigest())
