"""Why a pool gets no Pods, said where its users look (the pool, its events once, the queued
tasks' reason), for the causes a server with a runtime has: no configuration yet, the runtime
failing the passes, creation refused."""

from __future__ import annotations

from typing import Any

import pytest

from slotpool.services.ports import RuntimeFailed
from tests.controller.app.conftest import POOLS, TASKS, World
from tests.support.fake_runtime import DOWN


async def pool_json(world: World, pool_id: str) -> dict[str, Any]:
    found: dict[str, Any] = (await world.client.get(f"{POOLS}/{pool_id}")).json()
    return found


async def holds(world: World, pool_id: str) -> list[tuple[str, str]]:
    return [
        (e["reason"], e["message"]) for e in await world.events(pool_id) if e["action"] == "hold"
    ]


async def test_a_pool_without_a_configuration_says_so_until_it_has_one(world: World) -> None:
    created = await world.client.post(POOLS, json={"name": "bare", "pool_type": "k8s"})
    assert created.status_code == 201, created.text
    pool_id = created.json()["pool_id"]
    why = created.json()["no_pods_reason"]
    assert why.startswith("the pool has no configuration yet: save one (PUT ")
    task = await world.submit(pool_id, command="true")
    assert task["reason"] == f"waiting: no Pod can be created: {why}"
    assert await holds(world, pool_id) == [("no_pods", why)]

    await world.put_config(pool_id, image="ghcr.io/acme/agent:1.4", min_replicas=0)
    assert (await pool_json(world, pool_id))["no_pods_reason"] is None
    assert (await world.task(task["id"]))["reason"] == "waiting for a free slot: Pods are starting"
    later = await world.submit(pool_id, command="true")
    assert later["reason"] == ""  # the controller says why from its next pass on


async def test_a_failing_runtime_is_said_once_and_on_every_queued_task(world: World) -> None:
    pool_id = await world.pool(min_replicas=0)
    await world.sync(pool_id)
    task = await world.submit(pool_id, command="true")
    world.runtime.fail("pods")
    for _ in range(3):
        with pytest.raises(RuntimeFailed):
            await world.sync(pool_id)
    why = f"the fake runtime fails (503: {DOWN}); the controller tries again"
    assert (await pool_json(world, pool_id))["no_pods_reason"] == why
    assert (await world.task(task["id"]))["reason"] == f"waiting: no Pod can be created: {why}"
    assert await holds(world, pool_id) == [("runtime_failing", why)]

    del world.runtime.failing["pods"]
    report = await world.sync(pool_id)
    assert len(report.created) == 1
    assert (await pool_json(world, pool_id))["no_pods_reason"] is None
    assert (await world.task(task["id"]))["reason"] == "waiting for a free slot: Pods are starting"


async def test_a_refused_creation_is_the_queued_tasks_reason(world: World) -> None:
    pool_id = await world.pool(min_replicas=0)
    await world.sync(pool_id)
    world.runtime.fail("create_agent", "quota exceeded", status=403)
    task = await world.submit(pool_id, command="true")
    with pytest.raises(RuntimeFailed):
        await world.sync(pool_id)
    reason = (await world.client.get(f"{TASKS}/{task['id']}")).json()["reason"]
    assert reason.startswith("waiting: creating Pods failed (")
    assert "quota exceeded" in reason
