"""A pool this server can give no Pods says why, everywhere: a k8s pool on a server with no
cluster configured (this API has none), in the creation answer, the pool, its events (once) and
the reason of every task it queues."""

from __future__ import annotations

from typing import Any

from tests.api.conftest import Api
from tests.api.test_tasks_protocol import FakeAgent, agent_client

POOLS = "/api/v1/agent-pools"
NO_CLUSTER = "no Kubernetes cluster is configured in this server: set SLOTPOOL_KUBECONFIG"
CONFIG = {"image": "ghcr.io/acme/agent:1.4", "min_replicas": 1}


async def events(api: Api, pool_id: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = (await api.client.get(f"{POOLS}/{pool_id}/events")).json()[
        "items"
    ]
    return items


async def test_a_k8s_pool_without_a_cluster_says_why_it_gets_no_pods(api: Api) -> None:
    body = {"name": "builds", "pool_type": "k8s", "k8s_config": CONFIG}
    created = await api.client.post(POOLS, json=body)
    assert created.status_code == 201, created.text
    pool = created.json()
    assert pool["no_pods_reason"].startswith(NO_CLUSTER)
    assert "SLOTPOOL_KUBERNETES_IN_CLUSTER=true" in pool["no_pods_reason"]
    pool_id = pool["pool_id"]
    read = (await api.client.get(f"{POOLS}/{pool_id}")).json()
    assert read["no_pods_reason"] == pool["no_pods_reason"]
    listed = (await api.client.get(POOLS)).json()["items"]
    assert [p["no_pods_reason"] for p in listed] == [pool["no_pods_reason"]]

    tasks = [
        (await api.client.post("/api/v1/tasks", json={"pool_id": pool_id, "command": "true"}))
        for _ in range(2)
    ]
    for task in tasks:
        assert task.status_code == 201, task.text
        assert task.json()["status"] == "queued"
        assert task.json()["reason"] == f"waiting: no Pod can be created: {pool['no_pods_reason']}"

    # Saving the configuration again says nothing new: the decision log has it once.
    saved = await api.client.put(
        f"{POOLS}/{pool_id}/k8s-config", json={**CONFIG, "max_replicas": 3}
    )
    assert saved.status_code == 200, saved.text
    holds = [(e["action"], e["reason"], e["message"]) for e in await events(api, pool_id)]
    assert holds == [("hold", "no_pods", pool["no_pods_reason"])]


async def test_a_task_approved_into_the_queue_of_such_a_pool_says_why_too(api: Api) -> None:
    body = {"name": "gated", "pool_type": "k8s", "k8s_config": CONFIG}
    pool_id = (await api.client.post(POOLS, json=body)).json()["pool_id"]
    steps = [{"run": "true", "requires_approval": True}]
    task = await api.client.post("/api/v1/tasks", json={"pool_id": pool_id, "steps": steps})
    assert task.json()["status"] == "awaiting_approval", task.text
    approved = await api.client.post(f"/api/v1/tasks/{task.json()['id']}/approve")
    assert approved.status_code == 200, approved.text
    assert approved.json()["status"] == "queued"
    assert approved.json()["reason"].startswith(f"waiting: no Pod can be created: {NO_CLUSTER}")


async def test_a_static_pool_is_not_said_to_lack_pods(api: Api) -> None:
    created = await api.client.post(POOLS, json={"name": "by-hand", "pool_type": "static"})
    assert created.json()["no_pods_reason"] is None
    assert await events(api, created.json()["pool_id"]) == []


async def test_an_agent_started_by_hand_cannot_stand_in_for_the_pods_such_a_pool_lacks(
    api: Api,
) -> None:
    """A k8s pool's token registers only a Pod slotpool created (agent identity): an agent
    started by hand is refused, and the task waits with the reason why no Pod comes."""
    body = {"name": "by-hand-too", "pool_type": "k8s", "k8s_config": CONFIG}
    pool_id = (await api.client.post(POOLS, json=body)).json()["pool_id"]
    token = (await api.client.post(f"{POOLS}/{pool_id}/tokens", json={"name": "t"})).json()
    async with agent_client(api, token["token"]) as http:
        agent = FakeAgent(http, pool_id, "by-hand")
        refused = await agent.post(
            "register",
            {"name": "by-hand", "slots": 1, "version": "test", "credential": agent.credential},
        )
    assert refused.status_code == 403, refused.text
    task = await api.client.post("/api/v1/tasks", json={"pool_id": pool_id, "command": "true"})
    assert task.json()["status"] == "queued", task.text
    assert "no Kubernetes cluster is configured" in task.json()["reason"]
