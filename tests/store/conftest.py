"""The store's tests run on a new, migrated database of each kind (``database_url``: SQLite and
PostgreSQL); ``store`` is the store opened on it, closed after the test."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from slotpool.store.migrate import upgrade
from slotpool.store.uow import Store


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[Store]:
    upgrade(database_url)
    opened = Store(database_url)
    yield opened
    await opened.close()
