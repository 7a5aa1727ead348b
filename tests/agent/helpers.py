"""Small waits shared by the agent's tests (whether a process runs: ``tests.support.processes``)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path


async def wait_until(condition: Callable[[], object], seconds: float = 10.0) -> None:
    """Poll ``condition`` until it is truthy; fail the test after ``seconds``."""
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {seconds} s")
        await asyncio.sleep(0.02)


def pid_in(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except FileNotFoundError:
        return None
    return int(text) if text else None


async def read_pid(path: Path, seconds: float = 10.0) -> int:
    """A pid a step wrote into ``path`` (waits until it is there)."""
    await wait_until(lambda: pid_in(path), seconds)
    pid = pid_in(path)
    assert pid is not None
    return pid
