"""The pool list is built from the pools as stored (``api/pool_page.py``): for a page of varied
pools it is, byte for byte, what the list built from the domain pools and ``PoolOut`` made before
it, and each of its items is the single pool's answer; on both databases.

The pools: k8s with a rich configuration and windows, k8s without a configuration, one whose
configuration was saved again after its creation, one renamed, one with a window in force now,
one with a one-time unfreeze, one whose token was rotated (its hash counts the generation), one
whose Pod fields an edit left behind (written by code that does not know them), local with and
without a configuration, static; and keys in an order of the client's own (PostgreSQL's JSONB
keeps them in one of its own).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from fastapi import FastAPI
from pydantic import TypeAdapter

from slotpool.api.app import create_app
from slotpool.api.deps import Services
from slotpool.api.routes.pools import pools_out
from slotpool.api.schemas import PoolList
from slotpool.domain.trusted import trusted
from slotpool.store.db import sync_url
from slotpool.store.migrate import upgrade
from slotpool.store.uow import Store
from tests.api.conftest import ADMIN_TOKEN, settings_for
from tests.api.test_pools_api import POOLS, SEED_RIGHT
from tests.support.clock import Clock
from tests.support.server import asgi_client

POOL_LIST = TypeAdapter(PoolList)
RICH: dict[str, Any] = {
    "image": "ghcr.io/acme/agent:1.4",
    "image_pull_policy": "Always",
    "command": ["/bin/agent", "--fast"],
    "args": ["ünï"],
    "env": {"Z_LAST": "1", "A_FIRST": "ünï", "MIDDLE": ""},
    "resources": {"requests": {"cpu": "250m"}, "limits": {"memory": "1Gi", "cpu": 2}},
    "namespace": "team-a",
    "service_account": "agent",
    "node_selector": {"disk": "ssd", "a.b/zone": "z1"},
    "tolerations": [
        {"effect": "NoExecute", "operator": "Exists", "toleration_seconds": 30},
        {"key": "gpu", "value": "yes", "effect": "NoSchedule"},
    ],
    "labels": {"team": "a", "app": "x"},
    "annotations": {"note": 'hello "world"', "a.io/x": "1"},
    "max_replicas": 7,
    "slots_per_pod": 2,
    "freeze_schedules": [
        {"from_time": "11:00", "to_time": "13:00", "weekdays": [5]},
        {"to_time": "02:00", "from_time": "22:30", "weekdays": [6, 7], "note": "night"},
    ],
}


@dataclass
class Listing:
    app: FastAPI
    client: httpx.AsyncClient
    clock: Clock
    database_url: str

    @property
    def services(self) -> Services:
        services: Services = self.app.state.services
        return services

    async def create(self, name: str, pool_type: str = "k8s", **body: Any) -> str:
        response = await self.client.post(
            POOLS, json={"name": name, "pool_type": pool_type, **body}
        )
        assert response.status_code == 201, response.text
        pool_id: str = response.json()["pool_id"]
        return pool_id

    async def ok(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        response = await self.client.request(method, f"{POOLS}/{path}", **kwargs)
        assert response.status_code < 300, response.text
        return response

    async def old_page(self, *, limit: int, offset: int, name: str | None = None) -> bytes:
        """The list as it was built before: domain pools, ``PoolOut`` each, the page dumped."""
        pools, total = await self.services.pools.list(limit=limit, offset=offset, name=name)
        items = await pools_out(self.services, pools)
        page = {"items": items, "total": total, "limit": limit, "offset": offset}
        return POOL_LIST.dump_json(trusted(PoolList, page))


@pytest.fixture
async def listing(database_url: str) -> AsyncIterator[Listing]:
    upgrade(database_url)
    clock = Clock()
    app = create_app(settings_for(database_url), clock=clock)
    async with asgi_client(app, ADMIN_TOKEN) as client:
        yield Listing(app, client, clock, database_url)


def window_now(clock: Clock) -> dict[str, Any]:
    """A window in force at the clock's time, every day."""
    return {
        "from_time": (clock.now - timedelta(hours=1)).strftime("%H:%M"),
        "to_time": (clock.now + timedelta(hours=2)).strftime("%H:%M"),
        "weekdays": [1, 2, 3, 4, 5, 6, 7],
        "timezone": "UTC",
        "policy": "no_new_tasks",
        "note": "now",
    }


async def varied_pools(listing: Listing) -> None:
    await listing.create("seed", k8s_config=SEED_RIGHT)
    await listing.create("rich", k8s_config=RICH)
    await listing.create("empty")
    changed = await listing.create("changed", k8s_config=SEED_RIGHT)
    await listing.ok("PUT", f"{changed}/k8s-config", json={**RICH, "image": "busybox:2"})
    renamed = await listing.create("to-rename", k8s_config={"image": "busybox:1"})
    await listing.ok("PATCH", renamed, json={"name": "renamed", "description": "now ünï"})
    frozen = await listing.create("frozen", k8s_config={"image": "busybox:1"})
    await listing.ok("POST", f"{frozen}/freeze-schedules", json=window_now(listing.clock))
    lifted = await listing.create(
        "lifted", k8s_config={"image": "busybox:1", "freeze_schedules": [window_now(listing.clock)]}
    )
    until = (listing.clock.now + timedelta(minutes=30)).isoformat()
    await listing.ok("POST", f"{lifted}/one-time-unfreeze", json={"until": until, "note": "go"})
    rotated = await listing.create("rotated", k8s_config={"image": "busybox:1"})
    behind = await listing.create("behind", k8s_config={"image": "busybox:1"})
    await listing.create("here", "local")
    await listing.create("here-too", "local", k8s_config={"slots_per_pod": 2, "env": {"B": "b"}})
    await listing.create("by-hand", "static", description="started by hand")
    store = Store(listing.database_url)
    try:
        async with store.unit_of_work() as uow:  # as a rotation leaves the pool
            await uow.pools.set_token_state(rotated, agent_token="second", token_generation=2)
    finally:
        await store.close()
    engine = sa.create_engine(sync_url(listing.database_url))
    try:
        with engine.begin() as connection:  # as code that does not know the Pod fields saves
            connection.execute(
                sa.text(
                    "UPDATE agent_pools SET k8s_config = :config, revision = revision + 1 "
                    "WHERE pool_id = :id"
                ),
                {
                    "config": json.dumps({"image": "busybox:3", "namespace": "elsewhere"}),
                    "id": behind,
                },
            )
    finally:
        engine.dispose()


async def test_the_list_is_what_it_was_and_each_item_the_single_pools_answer(
    listing: Listing,
) -> None:
    await varied_pools(listing)
    response = await listing.client.get(POOLS, params={"limit": 1000})
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.content == await listing.old_page(limit=1000, offset=0)
    items = response.json()["items"]
    assert len(items) == 12
    shown = {item["name"]: item for item in items}
    assert shown["frozen"]["freeze"]["active"] is True
    assert shown["lifted"]["freeze"]["lifted_until"] is not None
    assert shown["lifted"]["one_time_unfreeze"]["note"] == "go"
    assert shown["rotated"]["token_generation"] == 2
    assert shown["behind"]["k8s_config"] == {"image": "busybox:3", "namespace": "elsewhere"}
    assert shown["by-hand"]["config_hash"] is None
    assert shown["empty"]["config_hash"] is None
    if listing.database_url.startswith("sqlite"):  # (JSONB keeps keys in an order of its own)
        assert list(shown["rich"]["k8s_config"]["env"]) == ["Z_LAST", "A_FIRST", "MIDDLE"]
    for item in items:
        single = await listing.ok("GET", item["pool_id"])
        # Byte for byte: the item as the single answer serialises it.
        assert json.dumps(single.json()) == json.dumps(item), item["name"]


async def test_pages_and_the_name_filter_are_what_they_were(listing: Listing) -> None:
    await varied_pools(listing)
    for limit, offset, name in ((3, 0, None), (5, 10, None), (1000, 12, None), (10, 0, "rich")):
        params: dict[str, Any] = {"limit": limit, "offset": offset}
        if name is not None:
            params["name"] = name
        response = await listing.client.get(POOLS, params=params)
        assert response.status_code == 200
        assert response.content == await listing.old_page(limit=limit, offset=offset, name=name)
    none = await listing.client.get(POOLS, params={"name": "nobody"})
    assert none.json() == {"items": [], "total": 0, "limit": 100, "offset": 0}
