"""The fake control plane for the agent's loop tests, started on a free port per test."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from tests.agent.fake_plane import FakeControlPlane


@pytest.fixture
async def plane() -> AsyncIterator[FakeControlPlane]:
    fake = FakeControlPlane()
    # Blocking calls go to a thread: the agent under test runs in this event loop.
    await asyncio.to_thread(fake.start)
    yield fake
    await asyncio.to_thread(fake.stop)
