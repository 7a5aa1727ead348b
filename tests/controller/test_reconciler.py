"""One pass over a pool (``Reconciler.run_pass``), on a real database with the runtime in memory:
what it creates, adopts, retires and records, and what its report says."""

from __future__ import annotations

from datetime import timedelta

import pytest

from slotpool.domain.config import PoolType, parse_config
from slotpool.domain.freeze import FreezeSchedule
from slotpool.domain.pods import PodState
from slotpool.domain.tasks import TaskSubmit
from slotpool.services.errors import Conflict, NotFound
from slotpool.services.ports import RuntimeFailed
from tests.controller.conftest import World

K8S = PoolType.k8s
# Fridays 11:00 to 14:00 UTC: the test clock starts inside it (Friday 2026-11-20 12:00).
FRIDAY_NOON = FreezeSchedule(from_time="11:00", to_time="14:00", weekdays=[5], timezone="UTC")


async def test_a_pass_creates_the_pods_min_replicas_asks_for_and_records_them(
    world: World,
) -> None:
    pool = await world.pool(min_replicas=2, slots_per_pod=2)
    report = await world.services.controller.run_pass(pool.pool_id, check_secret=True)

    assert report.secret == "created"
    assert pool.pool_id in world.runtime.tokens
    assert sorted(report.created) == sorted(world.runtime.of(pool.pool_id))
    assert len(report.created) == 2
    assert report.adopted == report.ended == report.removed == report.failures == []
    assert report.frozen is False
    assert report.decision["actions"][0]["action"] == "create_pods"
    pods = await world.pods(pool.pool_id)
    assert sorted(pods) == sorted(report.created)
    assert {p.state for p in pods.values()} == {PodState.starting}
    assert await world.events(pool.pool_id) == [("create_pods", "min_replicas", "done")]


async def test_a_second_pass_finds_everything_in_place(world: World) -> None:
    pool = await world.pool(min_replicas=1)
    first = await world.services.controller.run_pass(pool.pool_id, check_secret=True)
    again = await world.services.controller.run_pass(pool.pool_id, check_secret=True)

    assert again.secret == "unchanged"  # the Secret's token still authenticates for the pool
    assert again.created == again.adopted == again.ended == []
    assert world.runtime.calls["create_agent"] == 1
    assert again.decision["inputs"]["pods"]["starting"] == 1
    assert list(await world.pods(pool.pool_id)) == first.created


async def test_the_secret_is_checked_when_asked_or_due_not_on_every_pass(world: World) -> None:
    pool = await world.pool(min_replicas=0)
    await world.services.controller.run_pass(pool.pool_id, check_secret=False)
    assert world.runtime.calls["read_token"] == 1  # the first pass of this process checks
    world.runtime.tokens[pool.pool_id] = "spt_not-a-token"
    quiet = await world.services.controller.run_pass(pool.pool_id, check_secret=False)
    assert quiet.secret == "unchanged"
    assert world.runtime.calls["read_token"] == 1
    asked = await world.services.controller.run_pass(pool.pool_id, check_secret=True)
    assert asked.secret == "recreated"


async def test_pods_made_or_ended_behind_slotpools_back(world: World) -> None:
    pool = await world.pool(min_replicas=1, pending_timeout_seconds=3600)
    (ours,) = (await world.services.controller.run_pass(pool.pool_id, check_secret=True)).created
    world.runtime.set_phase(ours, "Failed", reason="Error", message="exit code 1")
    world.runtime.add(pool.pool_id, "stranger")

    report = await world.services.controller.run_pass(pool.pool_id, check_secret=False)

    assert report.adopted == ["stranger"]
    assert report.ended == [ours]
    # The stranger is the one Pod min_replicas asks for, but no config hash says it runs the
    # pool's configuration: idle, it is rebuilt.
    assert report.rebuilt == ["stranger"]
    (replacement,) = report.created
    pods = await world.pods(pool.pool_id)
    assert pods[ours].state is PodState.failed
    assert pods[ours].reason == f"fake pod {ours} ended: Error: exit code 1"
    assert pods["stranger"].state is PodState.terminating
    assert world.runtime.of(pool.pool_id) == [replacement]  # the ended one's copy went too


async def test_a_pod_that_vanished_is_retired_and_replaced(world: World) -> None:
    pool = await world.pool(min_replicas=1)
    (first,) = (await world.services.controller.run_pass(pool.pool_id, check_secret=True)).created
    world.runtime.vanish(first)
    world.clock.advance(seconds=1)

    report = await world.services.controller.run_pass(pool.pool_id, check_secret=False)

    assert report.ended == [first]
    assert len(report.created) == 1
    assert (await world.pods(pool.pool_id))[first].reason == (
        f"fake pod {first} vanished (no longer in the runtime)"
    )


async def test_a_pod_a_cache_does_not_hold_yet_is_confirmed_by_a_real_listing_and_kept(
    world: World,
) -> None:
    pool = await world.pool(min_replicas=1)
    (first,) = (await world.services.controller.run_pass(pool.pool_id, check_secret=True)).created
    world.runtime.unreported.add(first)  # the runtime's cache lags behind, the runtime does not
    world.clock.advance(seconds=1)

    report = await world.services.controller.run_pass(pool.pool_id, check_secret=False)

    assert (report.ended, report.created) == ([], [])
    assert world.runtime.fresh_lists == 1
    assert (await world.pods(pool.pool_id))[first].state is not PodState.failed
    world.runtime.unreported.clear()
    await world.services.controller.run_pass(pool.pool_id, check_secret=False)
    assert world.runtime.fresh_lists == 1  # nothing missing: the cache's word is enough


async def test_a_pending_pod_is_reported_with_the_runtimes_reason(world: World) -> None:
    pool = await world.pool(min_replicas=0)
    world.runtime.add(
        pool.pool_id, "waiting", phase="Pending", reason="Unschedulable", message="0/3 nodes"
    )
    report = await world.services.controller.run_pass(pool.pool_id, check_secret=False)
    assert [(p.name, p.reason) for p in report.pending] == [("waiting", "Unschedulable: 0/3 nodes")]


async def test_the_runtime_failing_to_list_fails_the_pass_with_what_was_done(
    world: World,
) -> None:
    pool = await world.pool(min_replicas=1)
    world.runtime.fail("pods")
    with pytest.raises(RuntimeFailed, match="the API server is down") as failed:
        await world.services.controller.run_pass(pool.pool_id, check_secret=True)
    assert failed.value.report.secret == "created"
    assert world.runtime.calls["create_agent"] == 0


async def test_a_failed_creation_fails_the_pass_and_is_recorded(world: World) -> None:
    pool = await world.pool(min_replicas=1)
    world.runtime.fail("create_agent", "quota exceeded")
    with pytest.raises(RuntimeFailed, match="create_pods failed: 503: quota exceeded") as failed:
        await world.services.controller.run_pass(pool.pool_id, check_secret=True)
    assert failed.value.report.created == []
    assert await world.events(pool.pool_id) == [("create_pods", "min_replicas", "failed")]


async def test_a_hold_is_recorded_when_it_starts_not_on_every_pass(world: World) -> None:
    pool = await world.pool(min_replicas=1, freeze_schedules=[FRIDAY_NOON.model_dump()])
    for _ in range(3):
        report = await world.services.controller.run_pass(pool.pool_id, check_secret=False)
        assert report.frozen is True
        assert report.created == []
    assert await world.events(pool.pool_id) == [("hold", "frozen", "held")]


async def test_queued_tasks_say_why_they_wait(world: World) -> None:
    pool = await world.pool(min_replicas=0, max_replicas=1, slots_per_pod=1)
    body = TaskSubmit(pool_id=pool.pool_id, command="true")
    tasks = [await world.services.tasks.submit(body, by="test") for _ in range(2)]
    await world.services.controller.run_pass(pool.pool_id, check_secret=False)
    assert {(await world.services.tasks.get(t.id)).reason for t in tasks} == {
        "waiting for a free slot: demand of 2 slots needs 2 Pods; max_replicas is 1"
    }


async def test_an_idle_outdated_pod_is_rebuilt(world: World) -> None:
    pool = await world.pool(min_replicas=1)
    (old,) = (await world.services.controller.run_pass(pool.pool_id, check_secret=True)).created
    newer = parse_config({"image": "ghcr.io/acme/agent:1.5", "min_replicas": 1}, pool_type=K8S)
    await world.services.pools.save_config(pool.pool_id, newer, by="t", expected_revision=None)
    report = await world.services.controller.run_pass(pool.pool_id, check_secret=False)
    assert report.rebuilt == [old]
    assert len(report.created) == 1
    assert world.runtime.of(pool.pool_id) == report.created
    assert (await world.pods(pool.pool_id))[old].state is PodState.terminating


async def test_a_back_off_is_resumed_by_a_new_controller(world: World) -> None:
    """The back-off moves to the pool's row, so a restarted controller goes on backing off."""
    pool = await world.pool(min_replicas=1, pending_timeout_seconds=10)
    await world.services.controller.run_pass(pool.pool_id, check_secret=True)
    world.clock.advance(seconds=11)
    unstuck = await world.services.controller.run_pass(pool.pool_id, check_secret=False)
    assert len(unstuck.removed) == 1
    assert unstuck.created == []
    async with world.store.unit_of_work() as uow:
        row = await uow.pools.get(pool.pool_id)
    assert row is not None
    assert row.backoff_failures == 1


async def test_passes_are_refused_for_pools_without_pods_to_keep(world: World) -> None:
    unconfigured = await world.pool("bare")
    with pytest.raises(Conflict, match="no configuration yet"):
        await world.services.controller.run_pass(unconfigured.pool_id, check_secret=False)
    with pytest.raises(NotFound):
        await world.services.controller.run_pass("pool-0000000000000000", check_secret=False)
    assert world.services.controller.reconciler.wake_at(unconfigured.pool_id) is None


async def test_the_plan_says_when_to_look_again(world: World) -> None:
    pool = await world.pool(min_replicas=1, pending_timeout_seconds=600)
    await world.services.controller.run_pass(pool.pool_id, check_secret=True)
    wake_at = world.services.controller.reconciler.wake_at(pool.pool_id)
    assert wake_at == world.clock.now + timedelta(seconds=600)  # the new Pod's pending timeout
