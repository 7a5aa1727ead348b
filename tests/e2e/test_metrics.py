"""/metrics read over HTTP from a real server process after a scripted scenario on a real local
pool (agents are real processes): queue, scale up, run, an approval gate, scale down."""

from __future__ import annotations

from pathlib import Path

from tests.e2e.conftest import Server, api
from tests.e2e.helpers import (
    TASKS,
    Samples,
    scrape,
    submit,
    task,
    total,
    until_final,
    value,
    wait_for,
)

CONTROLLER_ACTIONS = {"create_pods", "delete_pod", "rebuild_pod", "delete_stuck_pod", "hold"}


def test_metrics_follow_a_pool_through_scale_up_work_approval_and_scale_down(
    server: Server, shared: Path
) -> None:
    go = shared / "go"
    blocker = f"while [ ! -e {go} ]; do sleep 0.1; done"
    with api(server) as client:
        config = {
            "min_replicas": 0,
            "max_replicas": 2,
            "slots_per_pod": 2,
            "scale_down_delay_seconds": 2,
        }
        body = {"name": "metered", "pool_type": "local", "k8s_config": config}
        created = client.post("/api/v1/agent-pools", json=body)
        assert created.status_code == 201, created.text
        pool_id = created.json()["pool_id"]
        pool = {"pool": "metered"}
        before = scrape(client)
        assert value(before, "slotpool_pods_desired", **pool) == 0
        assert value(before, "slotpool_pool_max_replicas", **pool) == 2
        assert value(before, "slotpool_pool_min_replicas", **pool) == 0
        assert value(before, "slotpool_build_info", version=_version(before)) == 1
        assert total(before, "process_cpu_seconds_total") > 0  # the defaults are kept

        steps = [
            {"name": "plan", "run": "true"},
            {"name": "apply", "run": "true", "requires_approval": True},
        ]
        gated = submit(client, pool_id, steps=steps)
        wait_for(lambda: task(client, gated)["status"] == "awaiting_approval", what="the gate")
        blocked = [submit(client, pool_id, command=blocker) for _ in range(4)]

        def all_placed() -> bool:
            seen = scrape(client)
            return (
                total(seen, "slotpool_tasks", **pool, status="running") == 3
                and total(seen, "slotpool_pods", **pool, state="ready") == 2
            )

        wait_for(all_placed, what="3 tasks running on 2 ready Pods", seconds=90)
        busy = scrape(client)
        assert value(busy, "slotpool_tasks", **pool, status="queued") == 1
        assert value(busy, "slotpool_tasks", **pool, status="awaiting_approval") == 1
        assert value(busy, "slotpool_slots", **pool, state="busy") == 3
        assert value(busy, "slotpool_slots", **pool, state="reserved") == 1
        assert value(busy, "slotpool_slots", **pool, state="idle") == 0
        assert value(busy, "slotpool_pods_desired", **pool) == 2  # 5 slots wanted, max 2 Pods
        assert value(busy, "slotpool_pods_outdated", **pool) == 0
        assert value(busy, "slotpool_pool_frozen", **pool) == 0
        assert value(busy, "slotpool_agent_registrations_total", **pool) == 2
        assert value(busy, "slotpool_pods_created_total", **pool) == 2
        for phase in ("scheduled", "running", "registered"):  # the local runtime reaches all
            count = value(busy, "slotpool_pod_startup_seconds_count", **pool, phase=phase)
            assert count == 2, phase
        assert value(busy, "slotpool_scale_decisions_total", **pool, **_held("max_replicas")) >= 1

        assert client.post(f"{TASKS}/{gated}/approve").status_code == 200
        go.touch()
        done = [until_final(client, task_id) for task_id in [gated, *blocked]]
        assert [t["status"] for t in done] == ["succeeded"] * 5

        def scaled_down() -> bool:
            return total(scrape(client), "slotpool_pods", **pool, state="deleted") == 2

        wait_for(scaled_down, what="both Pods scaled down", seconds=60)
        after = scrape(client)
        events = client.get(f"/api/v1/agent-pools/{pool_id}/events?limit=200").json()["items"]

    assert value(after, "slotpool_pods_deleted_total", **pool, cause="scaled_down") == 2
    assert total(after, "slotpool_pods_deleted_total", **pool) == 2
    assert value(after, "slotpool_slots", **pool, state="busy") == 0
    assert total(after, "slotpool_tasks", **pool) == 0
    assert {dict(seen)["status"] for n, seen in after if n == "slotpool_tasks"} == {
        "queued",
        "running",
        "awaiting_approval",
    }
    assert value(after, "slotpool_pods_desired", **pool) == 0
    # One wait per start by the dispatcher (the approved step kept its slot), one duration per
    # task ended, one hand-over per step given a slot (the approved one too).
    assert value(after, "slotpool_task_wait_seconds_count", **pool) == 5
    assert value(after, "slotpool_task_duration_seconds_count", **pool, status="succeeded") == 5
    assert value(after, "slotpool_dispatch_latency_seconds_count", **pool) == 6
    assert total(after, "slotpool_tasks_lost_total", **pool) == 0
    for phase in ("scheduled", "running", "registered"):  # no new Pod started
        assert value(after, "slotpool_pod_startup_seconds_count", **pool, phase=phase) == 2
    # Every decision the controller recorded as a pool event is counted, by action and reason.
    decided = [e for e in events if e["action"] in CONTROLLER_ACTIONS]
    for action, reason in {(e["action"], e["reason"]) for e in decided}:
        recorded = sum(1 for e in decided if (e["action"], e["reason"]) == (action, reason))
        labels = {**pool, "action": action, "reason": reason}
        assert value(after, "slotpool_scale_decisions_total", **labels) == recorded, labels
    decisions = {"action": "delete_pod", "reason": "scale_down"}
    assert value(after, "slotpool_scale_decisions_total", **pool, **decisions) == 2
    assert total(after, "slotpool_scale_decisions_total", **pool, action="create_pods") >= 1
    assert value(after, "slotpool_controller_pass_seconds_count") > 0


def _held(reason: str) -> dict[str, str]:
    return {"action": "hold", "reason": reason}


def _version(samples: Samples) -> str:
    (labels,) = [dict(seen) for name, seen in samples if name == "slotpool_build_info"]
    return labels["version"]
