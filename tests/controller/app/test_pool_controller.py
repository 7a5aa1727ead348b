"""The pool controller's rules, one pass at a time, on the in-memory runtime (see the conftest):
what real-cluster and end-to-end tests show over minutes, in well under a second each."""

from __future__ import annotations

from typing import Any

import pytest

from slotpool.runtime.base import FAILED
from slotpool.services.ports import RuntimeFailed
from tests.controller.app.conftest import NAMESPACE, POOLS, World


async def actions(world: World, pool_id: str, kind: str) -> list[dict[str, object]]:
    return [e for e in await world.events(pool_id) if e["action"] == kind]


async def test_queued_work_scales_up_to_what_it_needs_and_no_further(world: World) -> None:
    pool_id = await world.pool(min_replicas=0, max_replicas=5, slots_per_pod=2)
    first = await world.sync(pool_id)
    assert (first.secret, first.created) == ("created", [])
    for _ in range(3):
        await world.submit(pool_id, command="true")

    report = await world.sync(pool_id)
    assert len(report.created) == 2  # three tasks, two slots per Pod
    assert world.runtime.names(pool_id) == set(report.created)
    assert set((await world.states(pool_id)).values()) == {"starting"}
    again = await world.sync(pool_id)
    assert again.created == [], "Pods on their way count: no scale-up storm"
    (created,) = await actions(world, pool_id, "create_pods")
    assert created["reason"] == "scale_up"
    assert created["inputs"]["inputs"]["queued"] == 3  # type: ignore[index]


async def test_only_pods_idle_for_the_scale_down_delay_are_deleted(world: World) -> None:
    pool_id = await world.pool(min_replicas=0, max_replicas=2, scale_down_delay_seconds=60)
    await world.sync(pool_id)
    tasks = [await world.submit(pool_id, command="true") for _ in range(2)]
    pods = (await world.sync(pool_id)).created
    agents = [await world.agent(pool_id, name) for name in pods]  # a task placed on each
    for agent in agents:
        (work,) = (await agent.claim([0]))["assignments"]
        await agent.result(work["task_id"], 0, "succeeded")
    assert {(await world.task(t["id"]))["status"] for t in tasks} == {"succeeded"}

    world.clock.advance(seconds=59)
    assert (await world.sync(pool_id)).removed == []
    assert world.runtime.names(pool_id) == set(pods)
    world.clock.advance(seconds=2)
    assert sorted((await world.sync(pool_id)).removed) == sorted(pods)
    assert world.runtime.names(pool_id) == set()
    assert set((await world.states(pool_id)).values()) == {"terminating"}


async def test_a_pod_with_a_busy_or_reserved_slot_is_never_deleted(world: World) -> None:
    pool_id = await world.pool(min_replicas=0, max_replicas=3, scale_down_delay_seconds=0)
    await world.sync(pool_id)
    busy = await world.submit(pool_id, command="sleep 1000")
    gated = await world.submit(
        pool_id, steps=[{"run": "plan"}, {"run": "apply", "requires_approval": True}]
    )
    quick = await world.submit(pool_id, command="true")
    created = (await world.sync(pool_id)).created
    agents = {name: await world.agent(pool_id, name) for name in created}
    on = {}
    for name, agent in agents.items():
        (work,) = (await agent.claim([0]))["assignments"]
        on[work["task_id"]] = name
    await agents[on[gated["id"]]].result(gated["id"], 0, "succeeded")  # reserved for step 2
    await agents[on[quick["id"]]].result(quick["id"], 0, "succeeded")
    assert (await world.task(gated["id"]))["status"] == "awaiting_approval"

    world.clock.advance(minutes=10)
    report = await world.sync(pool_id)
    assert report.removed == [on[quick["id"]]]
    assert world.runtime.names(pool_id) == {on[busy["id"]], on[gated["id"]]}
    states = await world.states(pool_id)
    assert (states[on[busy["id"]]], states[on[gated["id"]]]) == ("ready", "ready")
    world.clock.advance(hours=1)
    assert (await world.sync(pool_id)).removed == [], "still busy and reserved"

    await agents[on[busy["id"]]].result(busy["id"], 0, "succeeded")
    assert (await world.sync(pool_id)).removed == [on[busy["id"]]]


async def test_no_pod_is_created_inside_a_freeze_window(world: World) -> None:
    # The clock stands at Friday 2026-11-20 12:00 UTC.
    window = {"from_time": "11:00", "to_time": "13:00", "weekdays": [5], "timezone": "UTC"}
    pool_id = await world.pool(min_replicas=1, max_replicas=3, freeze_schedules=[window])
    await world.submit(pool_id, command="true")

    report = await world.sync(pool_id)
    assert (report.frozen, report.created) == (True, [])
    assert [h["reason"] for h in report.decision["holds"]] == ["frozen"]
    assert world.runtime.names(pool_id) == set()
    world.clock.advance(hours=1, minutes=1)  # past the window's end
    after = await world.sync(pool_id)
    assert (after.frozen, len(after.created)) == (False, 1)


async def test_a_config_change_rebuilds_idle_pods_now_and_busy_ones_once_idle(
    world: World,
) -> None:
    config: dict[str, Any] = {"image": "ghcr.io/acme/agent:1.4", "slots_per_pod": 1}
    pool_id = await world.pool(**config, min_replicas=2, max_replicas=2)
    old = (await world.sync(pool_id)).created
    agents = {name: await world.agent(pool_id, name) for name in old}
    running = await world.submit(pool_id, command="sleep 1000")
    busy = (await world.task(running["id"]))["pod_name"]
    (idle,) = set(old) - {busy}
    old_hash = world.runtime.pods_of[pool_id][busy].config_hash

    await world.put_config(pool_id, **{**config, "image": "ghcr.io/acme/agent:1.5"}, min_replicas=2)
    await world.sync(pool_id)
    names = world.runtime.names(pool_id)
    assert busy in names
    assert idle not in names
    assert len(names) == 2
    (new,) = names - {busy}
    assert world.runtime.pods_of[pool_id][new].config_hash != old_hash
    rebuilt = await actions(world, pool_id, "rebuild_pod")
    assert [(e["pod"], e["reason"]) for e in rebuilt] == [(idle, "config_changed")]

    (work,) = (await agents[busy].claim([0]))["assignments"]
    await agents[busy].result(work["task_id"], 0, "succeeded")
    report = await world.sync(pool_id)
    assert report.rebuilt == [busy]
    assert busy not in world.runtime.names(pool_id)
    hashes = {p.config_hash for p in world.runtime.pods_of[pool_id].values()}
    assert len(world.runtime.names(pool_id)) == 2
    assert old_hash not in hashes


async def test_pods_that_never_start_are_deleted_and_creation_backs_off(world: World) -> None:
    world.runtime.start = "never"
    pool_id = await world.pool(min_replicas=1, max_replicas=1, pending_timeout_seconds=10)
    (stuck,) = (await world.sync(pool_id)).created
    world.clock.advance(seconds=5)
    waiting = await world.sync(pool_id)
    assert [(p.name, p.reason.split(":")[0]) for p in waiting.pending] == [(stuck, "Unschedulable")]

    world.clock.advance(seconds=6)  # past the pending timeout
    unstuck = await world.sync(pool_id)
    assert (unstuck.removed, unstuck.created) == ([stuck], [])
    (deleted,) = await actions(world, pool_id, "delete_stuck_pod")
    assert "Unschedulable" in str(deleted["message"])
    world.clock.advance(seconds=5)
    held = await world.sync(pool_id)
    assert held.created == []
    assert "backoff" in [h["reason"] for h in held.decision["holds"]]
    world.clock.advance(seconds=6)  # the first back-off (10 s) is over
    assert len((await world.sync(pool_id)).created) == 1


async def test_a_pod_that_ends_is_retired_with_the_runtimes_reason_and_replaced(
    world: World,
) -> None:
    pool_id = await world.pool(min_replicas=1, max_replicas=1)
    (first,) = (await world.sync(pool_id)).created
    world.runtime.set_phase(first, FAILED, reason="Error", message="the agent exited with 1")

    report = await world.sync(pool_id)
    assert report.ended == [first]
    assert len(report.created) == 1
    assert first not in report.created
    assert world.runtime.names(pool_id) == set(report.created), "an ended Pod's copy goes"
    pods = (await world.client.get(f"{POOLS}/{pool_id}/pods")).json()["items"]
    (ended,) = [p for p in pods if p["name"] == first]
    assert ended["state"] == "failed"
    assert ended["reason"] == f"fake pod {first} ended: Error: the agent exited with 1"


async def test_a_failed_create_is_recorded_and_the_next_pass_creates(world: World) -> None:
    pool_id = await world.pool(min_replicas=1, max_replicas=1)
    world.runtime.fail("create_agent", times=1)
    with pytest.raises(RuntimeFailed) as failed:
        await world.sync(pool_id)
    assert "503" in str(failed.value)
    assert failed.value.report.created == []
    (event,) = await actions(world, pool_id, "create_pods")
    assert event["outcome"] == "failed"
    assert len((await world.sync(pool_id)).created) == 1


async def test_a_pod_made_outside_the_books_is_adopted(world: World) -> None:
    pool_id = await world.pool(min_replicas=1, max_replicas=1)
    config_hash = (await world.client.get(f"{POOLS}/{pool_id}")).json()["config_hash"]
    name = f"slotpool-{pool_id}-outside"
    world.runtime.add(pool_id, name, namespace=NAMESPACE, config_hash=config_hash)

    report = await world.sync(pool_id)
    assert (report.adopted, report.created) == ([name], [])
    assert await world.states(pool_id) == {name: "starting"}
    await world.agent(pool_id, name)
    assert await world.states(pool_id) == {name: "ready"}


async def test_the_orphan_sweep_deletes_pods_of_pools_that_do_not_exist(world: World) -> None:
    pool_id = await world.pool(min_replicas=1, max_replicas=1)
    (kept,) = (await world.sync(pool_id)).created
    ghost_pool = "pool-0000000000000000"
    ghost = f"slotpool-{ghost_pool}-ghost"
    world.runtime.add(ghost_pool, ghost, namespace=NAMESPACE, config_hash="x")

    assert await world.controller.sweep_orphans() == [ghost]
    assert world.runtime.names(ghost_pool) == set()
    assert world.runtime.names(pool_id) == {kept}
    assert await world.controller.sweep_orphans() == []


async def test_a_pod_made_by_a_rebuild_is_not_scaled_down_before_it_could_serve(
    world: World,
) -> None:
    """Issue 16's churn: the replacement of a rebuilt Pod took 45 s to start and was scaled
    down 15 s after it registered (the 60 s delay counted from its creation). It now gets the
    whole delay from the moment it can serve, takes the next task, and only then goes."""
    config: dict[str, Any] = {"min_replicas": 0, "scale_down_delay_seconds": 60}
    pool_id = await world.pool(**config)
    first = await world.submit(pool_id, command="true")
    (old,) = (await world.sync(pool_id)).created
    agent = await world.agent(pool_id, old)
    (work,) = (await agent.claim([0]))["assignments"]
    await agent.result(work["task_id"], 0, "succeeded")
    assert (await world.task(first["id"]))["status"] == "succeeded"
    world.clock.advance(seconds=5)

    await world.put_config(pool_id, image="ghcr.io/acme/agent:1.5", slots_per_pod=1, **config)
    await world.sync(pool_id)
    (replacement,) = world.runtime.names(pool_id)
    assert replacement != old
    rebuilt = await actions(world, pool_id, "rebuild_pod")
    assert [e["pod"] for e in rebuilt] == [old]

    world.clock.advance(seconds=45)  # a slow start: the image is pulled
    served = await world.agent(pool_id, replacement)
    world.clock.advance(seconds=15)
    assert (await world.sync(pool_id)).removed == []
    assert world.runtime.names(pool_id) == {replacement}

    # It serves the next task, and is scaled down only once idle for the delay after it.
    second = await world.submit(pool_id, command="true")
    (work,) = (await served.claim([0]))["assignments"]
    assert work["task_id"] == second["id"]
    await served.result(work["task_id"], 0, "succeeded")
    world.clock.advance(seconds=59)
    assert (await world.sync(pool_id)).removed == []
    world.clock.advance(seconds=1)
    assert (await world.sync(pool_id)).removed == [replacement]
    (scaled_down,) = await actions(world, pool_id, "delete_pod")
    assert scaled_down["reason"] == "scale_down"
