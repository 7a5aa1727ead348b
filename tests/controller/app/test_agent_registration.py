"""Registering the agent of a pod the runtime lists: also before the pass that created the pod
has recorded it (the agent was quicker), and never with a uid that is not the pod's."""

from __future__ import annotations

from tests.api.test_tasks_protocol import new_credential
from tests.controller.app.conftest import NAMESPACE, World


async def test_an_agent_quicker_than_the_pass_that_created_its_pod_registers(
    world: World,
) -> None:
    pool_id = await world.pool(min_replicas=0)
    await world.sync(pool_id)  # the pool's Secret and its token
    # Created, not yet in the books.
    pod = world.runtime.add(pool_id, f"slotpool-{pool_id}-early", namespace=NAMESPACE)
    assert await world.states(pool_id) == {}

    token = world.runtime.tokens[pool_id]
    body = {"name": pod.name, "slots": 1, "pod_uid": "not-its-uid", "credential": new_credential()}
    wrong = await world.client.post(
        f"/api/v1/agent/pools/{pool_id}/register",
        json=body,
        headers={"Authorization": f"Bearer {token}"},
    )
    assert wrong.status_code == 403, wrong.text

    await world.agent(pool_id, pod.name)  # with the pod's uid, as the runtime reports it
    assert await world.states(pool_id) == {pod.name: "ready"}
    task = await world.submit(pool_id, command="echo early")
    assert task["status"] == "running"
