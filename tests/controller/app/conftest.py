"""The pool controller on the in-memory runtime: the real app on a real SQLite database, its
runtime a ``FakeRuntime``, its clock one the test moves, and no background loop (the server's
pod sync is off): each pass is one ``sync(pool)`` the test calls. The test plays the agents over
the agent protocol, with the token the controller wrote into the pool's (fake) Secret.
"""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from slotpool.api.app import create_app
from slotpool.controller import sweeper
from slotpool.controller.assembly import PoolController
from slotpool.domain.config import PoolType
from slotpool.services.ports import SyncReport
from slotpool.store.migrate import upgrade
from tests.api.conftest import ADMIN_TOKEN, settings_for
from tests.api.test_tasks_protocol import FakeAgent
from tests.support.clock import Clock
from tests.support.fake_runtime import FakeRuntime
from tests.support.server import asgi_client

POOLS = "/api/v1/agent-pools"
TASKS = "/api/v1/tasks"
NAMESPACE = "slotpool-agents"  # the settings' default namespace


@dataclass
class World:
    app: FastAPI
    client: httpx.AsyncClient
    runtime: FakeRuntime
    clock: Clock
    agent_clients: list[httpx.AsyncClient] = field(default_factory=list)

    @property
    def controller(self) -> PoolController:
        controller: PoolController = self.app.state.services.controller
        return controller

    async def pool(self, name: str = "work", **config: Any) -> str:
        """A k8s pool with ``config`` (an image and one slot per Pod unless given)."""
        k8s_config = {"image": "ghcr.io/acme/agent:1.4", "slots_per_pod": 1, **config}
        body = {"name": name, "pool_type": "k8s", "k8s_config": k8s_config}
        response = await self.client.post(POOLS, json=body)
        assert response.status_code == 201, response.text
        pool_id: str = response.json()["pool_id"]
        return pool_id

    async def sync(self, pool_id: str) -> SyncReport:
        """One pass of the controller over the pool, now."""
        pool = await self.app.state.services.pools.get(pool_id)
        report: SyncReport = await self.controller.sync(pool)
        return report

    async def submit(self, pool_id: str, **body: Any) -> dict[str, Any]:
        response = await self.client.post(TASKS, json={"pool_id": pool_id, **body})
        assert response.status_code == 201, response.text
        task: dict[str, Any] = response.json()
        return task

    async def task(self, task_id: str) -> dict[str, Any]:
        found: dict[str, Any] = (await self.client.get(f"{TASKS}/{task_id}")).json()
        return found

    async def put_config(self, pool_id: str, **config: Any) -> None:
        response = await self.client.put(f"{POOLS}/{pool_id}/k8s-config", json=config)
        assert response.status_code == 200, response.text

    async def states(self, pool_id: str) -> dict[str, str]:
        """Each Pod the control plane knows of, by name: its state."""
        pods = (await self.client.get(f"{POOLS}/{pool_id}/pods")).json()["items"]
        return {p["name"]: p["state"] for p in pods}

    async def events(self, pool_id: str) -> list[dict[str, Any]]:
        response = await self.client.get(f"{POOLS}/{pool_id}/events", params={"limit": 200})
        items: list[dict[str, Any]] = response.json()["items"]
        return items

    async def agent(self, pool_id: str, name: str, slots: int = 1) -> FakeAgent:
        """The agent of Pod ``name``, registered, with the token of the pool's Secret."""
        http = httpx.AsyncClient(
            transport=self.client._transport,
            base_url=str(self.client.base_url),
            headers={"Authorization": f"Bearer {self.runtime.tokens[pool_id]}"},
        )
        self.agent_clients.append(http)
        agent = FakeAgent(http, pool_id, name, uid=self.runtime.pods_of[pool_id][name].uid)
        await agent.register(slots)
        return agent


@pytest.fixture(scope="session")
def migrated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated SQLite database, copied for each test (migrating takes longer than a test)."""
    path = tmp_path_factory.mktemp("controller-template") / "slotpool.db"
    upgrade(f"sqlite:///{path}")
    return path


@pytest.fixture
async def world(
    migrated: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[World]:
    shutil.copyfile(migrated, tmp_path / "slotpool.db")
    # The sweeper sweeps once at start and not again: the test moves the clock by hours, and a
    # sweep that happened to run after such a move (more likely on a busy machine) would find
    # its agents silent and its reservations expired.
    monkeypatch.setattr(sweeper, "INTERVAL_SECONDS", 10.0**6)
    settings = settings_for(
        f"sqlite:///{tmp_path}/slotpool.db",
        pod_sync_seconds=0,  # no background pass: the test calls each one
        agent_timeout_seconds=3600,  # the moved clock makes no agent silent
    )
    clock = Clock()
    runtime = FakeRuntime(clock=clock)
    app = create_app(settings, clock=clock, runtimes={PoolType.k8s: runtime})
    async with asgi_client(app, ADMIN_TOKEN) as client:
        world = World(app, client, runtime, clock)
        yield world
        for http in world.agent_clients:
            await http.aclose()
