"""How Pods end, as the API lists them (deleted on purpose, with why, or failed), and the manual
drain (``DELETE /agent-pools/{id}/pods/{name}``), on the real app with the in-memory runtime:
each pass is one ``sync`` the test calls."""

from __future__ import annotations

from typing import Any

from tests.controller.app.conftest import POOLS, World


async def pods(world: World, pool_id: str) -> dict[str, dict[str, Any]]:
    response = await world.client.get(f"{POOLS}/{pool_id}/pods")
    assert response.status_code == 200, response.text
    return {p["name"]: p for p in response.json()["items"]}


def ending(pod: dict[str, Any]) -> tuple[str, str | None, bool | None]:
    """(state, the outcome in words, whether it was deliberate)."""
    outcome = pod["outcome"]
    if outcome is None:
        return pod["state"], None, None
    return pod["state"], outcome["text"], outcome["deliberate"]


async def test_a_pod_scaled_down_ends_deleted_not_failed(world: World) -> None:
    pool_id = await world.pool(min_replicas=0, max_replicas=1, scale_down_delay_seconds=0)
    await world.submit(pool_id, command="true")
    (name,) = (await world.sync(pool_id)).created
    agent = await world.agent(pool_id, name)
    (work,) = (await agent.claim([0]))["assignments"]
    await agent.result(work["task_id"], 0, "succeeded")
    assert ending((await pods(world, pool_id))[name]) == ("ready", None, None)

    assert (await world.sync(pool_id)).removed == [name]
    assert ending((await pods(world, pool_id))[name]) == ("terminating", "scaled down", True)
    world.clock.advance(seconds=1)
    report = await world.sync(pool_id)  # the runtime no longer lists it
    assert report.ended == [], "a Pod slotpool deleted is not reported as ended"
    pod = (await pods(world, pool_id))[name]
    assert ending(pod) == ("deleted", "scaled down", True)
    assert pod["outcome"]["cause"] == "scaled_down"


async def test_a_pod_replaced_by_a_rebuild_ends_deleted_replaced(world: World) -> None:
    config: dict[str, Any] = {"image": "ghcr.io/acme/agent:1.4", "slots_per_pod": 1}
    pool_id = await world.pool(**config, min_replicas=1, max_replicas=1)
    (old,) = (await world.sync(pool_id)).created
    await world.put_config(pool_id, **{**config, "image": "ghcr.io/acme/agent:1.5"}, min_replicas=1)
    world.clock.advance(seconds=1)
    await world.sync(pool_id)
    assert ending((await pods(world, pool_id))[old]) == ("deleted", "replaced by a rebuild", True)


async def test_a_pod_that_crashed_or_vanished_ends_failed(world: World) -> None:
    pool_id = await world.pool(min_replicas=2, max_replicas=2, pending_timeout_seconds=3600)
    crashed, vanished = (await world.sync(pool_id)).created
    world.runtime.set_phase(crashed, "Failed", reason="Error", message="exit code 1")
    world.runtime.vanish(vanished)
    world.clock.advance(seconds=1)
    report = await world.sync(pool_id)
    assert sorted(report.ended) == sorted([crashed, vanished])
    listed = await pods(world, pool_id)
    assert ending(listed[crashed]) == ("failed", "crashed", False)
    assert ending(listed[vanished]) == ("failed", "vanished", False)


async def test_a_drained_pod_takes_no_new_task_finishes_its_own_then_goes(world: World) -> None:
    pool_id = await world.pool(min_replicas=1, max_replicas=3, slots_per_pod=2)
    (name,) = (await world.sync(pool_id)).created
    agent = await world.agent(pool_id, name, slots=2)
    running = await world.submit(pool_id, command="sleep 100")
    (work,) = (await agent.claim([0, 1]))["assignments"]
    assert work["task_id"] == running["id"]

    response = await world.client.delete(f"{POOLS}/{pool_id}/pods/{name}")
    assert response.status_code == 202, response.text
    body = response.json()
    assert (body["name"], body["state"]) == (name, "draining")
    assert body["outcome"] == {
        "cause": "drained",
        "deliberate": True,
        "by": "configured",
        "text": "drained by configured",
    }

    queued = await world.submit(pool_id, command="true")
    assert (await agent.claim([1]))["assignments"] == [], "a draining Pod gets no new task"
    step = {"task_id": running["id"], "step_index": 0, "slot": 0}
    assert (await agent.heartbeat([step]))["drain"], "its agent is told to take no new work"
    report = await world.sync(pool_id)
    assert name not in report.removed, "never deleted with a busy slot"
    assert name in world.runtime.names(pool_id)
    # Draining, it no longer counts as capacity: min_replicas and the queued task want one.
    (replacement,) = report.created
    assert (await world.task(queued["id"]))["status"] == "queued"

    await agent.result(running["id"], 0, "succeeded")
    assert (await world.task(running["id"]))["status"] == "succeeded"
    report = await world.sync(pool_id)
    assert report.removed == [name]
    assert report.created == [], "the replacement is there already: no churn"
    assert name not in world.runtime.names(pool_id)
    assert ending((await pods(world, pool_id))[name]) == (
        "terminating",
        "drained by configured",
        True,
    )
    world.clock.advance(seconds=1)
    await world.sync(pool_id)
    listed = await pods(world, pool_id)
    assert ending(listed[name]) == ("deleted", "drained by configured", True)
    assert set(world.runtime.names(pool_id)) == {replacement}
    assert (await world.sync(pool_id)).created == [], "and none after it"


async def test_draining_is_idempotent_and_keeps_who_asked_first(world: World) -> None:
    pool_id = await world.pool(min_replicas=1, max_replicas=1)
    (name,) = (await world.sync(pool_id)).created  # still starting: no agent yet
    first = await world.client.delete(f"{POOLS}/{pool_id}/pods/{name}")
    again = await world.client.delete(f"{POOLS}/{pool_id}/pods/{name}")
    assert (first.status_code, again.status_code) == (202, 202)
    assert first.json()["state"] == again.json()["state"] == "draining"
    assert first.json()["outcome"] == again.json()["outcome"]
    # Its agent registering now does not put it back in service.
    agent = await world.agent(pool_id, name)
    assert (await pods(world, pool_id))[name]["state"] == "draining"
    assert (await agent.claim([0]))["assignments"] == []


async def test_draining_a_pod_already_gone_answers_its_end(world: World) -> None:
    pool_id = await world.pool(min_replicas=1, max_replicas=1, pending_timeout_seconds=3600)
    (name,) = (await world.sync(pool_id)).created
    world.runtime.set_phase(name, "Failed", reason="Error", message="exit code 1")
    await world.sync(pool_id)
    response = await world.client.delete(f"{POOLS}/{pool_id}/pods/{name}")
    assert response.status_code == 202, response.text
    assert ending(response.json()) == ("failed", "crashed", False)


async def test_draining_an_unknown_pod_or_pool_is_404(world: World) -> None:
    pool_id = await world.pool(min_replicas=0)
    unknown = await world.client.delete(f"{POOLS}/{pool_id}/pods/no-such-pod")
    assert unknown.status_code == 404
    assert unknown.json()["error"] == f"pod no-such-pod not found in agent pool {pool_id}"
    no_pool = await world.client.delete(f"{POOLS}/pool-0000000000000000/pods/x")
    assert no_pool.status_code == 404
    bad_pool = await world.client.delete(f"{POOLS}/not-a-pool/pods/x")
    assert bad_pool.status_code == 422


async def test_draining_needs_the_admin_token(world: World) -> None:
    pool_id = await world.pool(min_replicas=1)
    (name,) = (await world.sync(pool_id)).created
    response = await world.client.delete(
        f"{POOLS}/{pool_id}/pods/{name}", headers={"Authorization": "Bearer wrong"}
    )
    assert response.status_code == 401
    assert (await pods(world, pool_id))[name]["state"] == "starting"
