"""An API under test: a migrated database of either kind, the real app, a clock the test moves."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import pytest
from pydantic import SecretStr

from slotpool.api.app import create_app
from slotpool.settings import Settings
from slotpool.store.migrate import upgrade
from tests.support.clock import Clock
from tests.support.server import asgi_client

ADMIN_TOKEN = "test-admin-token-0123456789abcdef"


@dataclass
class Api:
    client: httpx.AsyncClient
    settings: Settings
    clock: Clock
    database_url: str


def settings_for(database_url: str, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "database_url": database_url,
        "admin_token": SecretStr(ADMIN_TOKEN),
        "public_url": "http://slotpool.test:8080",
        "default_namespace": "slotpool-agents",
        "local_runtime": False,
    }
    values.update(overrides)
    return Settings.model_validate(values)


@pytest.fixture
async def api(database_url: str) -> AsyncIterator[Api]:
    upgrade(database_url)
    settings = settings_for(database_url)
    clock = Clock()
    async with asgi_client(create_app(settings, clock=clock), ADMIN_TOKEN) as client:
        yield Api(client=client, settings=settings, clock=clock, database_url=database_url)
