"""The controller's fast tests: the real services, store and controller on a real database (SQLite
and PostgreSQL), with the runtime in memory (``FakeRuntime``) and a clock the test moves."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest

from slotpool.api.app import build_services
from slotpool.api.deps import Services
from slotpool.domain.config import PoolType, parse_config
from slotpool.domain.pods import Pod
from slotpool.domain.pools import Pool
from slotpool.runtime.base import RuntimeRegistry
from slotpool.settings import Settings
from slotpool.store.migrate import upgrade
from slotpool.store.uow import Store
from tests.support.clock import Clock
from tests.support.fake_runtime import FakeRuntime, WatchingFakeRuntime

IMAGE = "ghcr.io/acme/agent:1.4"


@dataclass
class World:
    store: Store
    settings: Settings
    runtime: FakeRuntime
    clock: Clock
    services: Services

    async def pool(
        self, name: str = "p", *, pool_type: PoolType = PoolType.k8s, **config: Any
    ) -> Pool:
        """A pool; with ``config`` (as the API takes it), configured."""
        parsed = None
        if config:
            parsed = parse_config({"image": IMAGE, **config}, pool_type=pool_type)
        return await self.services.pools.create(
            name=name, description="", pool_type=pool_type, config=parsed, by="test"
        )

    async def pods(self, pool_id: str) -> dict[str, Pod]:
        async with self.store.unit_of_work() as uow:
            return {p.name: p for p in await uow.pods.of_pool(pool_id)}

    async def events(self, pool_id: str) -> list[tuple[str, str, str]]:
        """The pool's events, oldest first: (action, reason, outcome)."""
        async with self.store.unit_of_work() as uow:
            page, _total = await uow.events.page(pool_id, limit=500, before=None)
        return [(e.action, e.reason, e.outcome.value) for e in reversed(page)]


@pytest.fixture
async def world(database_url: str) -> AsyncIterator[World]:
    async with world_of(database_url, WatchingFakeRuntime) as made:
        yield made


@contextlib.asynccontextmanager
async def world_of(database_url: str, runtime_type: type[FakeRuntime]) -> AsyncIterator[World]:
    """A world on a new database, with a runtime of ``runtime_type``."""
    upgrade(database_url)
    settings = Settings(
        database_url=database_url,
        local_runtime=False,
        public_url="http://slotpool.test:8080",
        default_namespace="agents",
    )
    store = Store(database_url)
    clock = Clock()
    runtime = runtime_type(clock=clock)
    services = build_services(store, settings, clock, RuntimeRegistry({PoolType.k8s: runtime}))
    try:
        yield World(store, settings, runtime, clock, services)
    finally:
        await store.close()
