"""End to end on one machine: the server as its own process, agents as real processes started by
the local runtime, tasks through the real protocol. Nothing is faked."""

from __future__ import annotations

import contextlib
import itertools
import os
import signal
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from tests.e2e.conftest import Server, api
from tests.e2e.helpers import TASKS, submit, task, until_final, wait_for
from tests.support.processes import alive
from tests.support.server import kill_local_agents


def local_pool(client: httpx.Client, *, pods: int, slots: int, name: str = "local") -> str:
    body = {
        "name": name,
        "pool_type": "local",
        "k8s_config": {"min_replicas": pods, "max_replicas": pods, "slots_per_pod": slots},
    }
    response = client.post("/api/v1/agent-pools", json=body)
    assert response.status_code == 201, response.text
    pool_id: str = response.json()["pool_id"]
    wait_for(lambda: ready_pods(client, pool_id) == pods, what=f"{pods} ready pods")
    return pool_id


def ready_pods(client: httpx.Client, pool_id: str) -> int:
    pods = client.get(f"/api/v1/agent-pools/{pool_id}/pods").json()["items"]
    return sum(1 for p in pods if p["state"] == "ready")


def test_fifty_tasks_over_two_pods_of_four_slots(server: Server) -> None:
    with api(server) as client:
        pool_id = local_pool(client, pods=2, slots=4)
        ids = [
            submit(client, pool_id, command="sleep 0.3; echo task $SLOTPOOL_TASK_ID")
            for _ in range(50)
        ]
        done = [until_final(client, task_id, seconds=120) for task_id in ids]
        logs = [client.get(f"{TASKS}/{t}/logs").text for t in ids]
    assert [t["status"] for t in done] == ["succeeded"] * 50
    assert all(log == f"task {t}\n" for log, t in zip(logs, ids, strict=True))
    spans = [
        (
            (t["pod_name"], t["slot_index"]),
            datetime.fromisoformat(t["results"][0]["started_at"]),
            datetime.fromisoformat(t["results"][0]["finished_at"]),
        )
        for t in done
    ]
    assert len({slot for slot, _, _ in spans}) <= 8
    by_slot: dict[Any, list[tuple[datetime, datetime]]] = {}
    for slot, start, end in spans:
        by_slot.setdefault(slot, []).append((start, end))
    for slot, intervals in by_slot.items():
        intervals.sort()
        for (_, end), (start, _) in itertools.pairwise(intervals):
            assert end <= start, f"slot {slot} was given twice at once"
    events = sorted([(s, 1) for _, s, _ in spans] + [(e, -1) for _, _, e in spans])
    running = peak = 0
    for _, delta in events:
        running += delta
        peak = max(peak, running)
    assert 1 < peak <= 8


def test_an_approved_step_runs_on_the_same_pod_slot_and_workdir(server: Server) -> None:
    with api(server) as client:
        pool_id = local_pool(client, pods=1, slots=2)
        steps = [
            {"name": "plan", "run": "pwd; echo planned > plan.out"},
            {"name": "apply", "run": "pwd; cat plan.out", "requires_approval": True},
        ]
        task_id = submit(client, pool_id, steps=steps)
        wait_for(lambda: task(client, task_id)["status"] == "awaiting_approval", what="gate")
        waiting = task(client, task_id)
        assert client.post(f"{TASKS}/{task_id}/approve").status_code == 200
        done = until_final(client, task_id)
        log = client.get(f"{TASKS}/{task_id}/logs").text
    assert done["status"] == "succeeded"
    assert (done["pod_name"], done["slot_index"]) == (waiting["pod_name"], waiting["slot_index"])
    first_dir, second_dir, content = log.splitlines()
    assert first_dir == second_dir
    assert content == "planned"


def test_cancel_stops_the_process(server: Server, shared: Path) -> None:
    marker = shared / "pid"
    with api(server) as client:
        pool_id = local_pool(client, pods=1, slots=1)
        task_id = submit(client, pool_id, command=f"echo $$ > {marker}; sleep 60")
        wait_for(marker.exists, what="the step to start")
        pid = int(marker.read_text())
        assert client.post(f"{TASKS}/{task_id}/cancel").status_code == 200
        done = until_final(client, task_id)
    assert done["status"] == "cancelled"
    wait_for(lambda: not alive(pid), what="the step's process to end", seconds=15)


def test_killing_an_agent_makes_its_tasks_lost_with_the_reason(
    server: Server, shared: Path
) -> None:
    marker = shared / "started"
    with api(server) as client:
        pool_id = local_pool(client, pods=1, slots=1)
        task_id = submit(
            client, pool_id, command=f"echo $$ > {marker}.tmp; mv {marker}.tmp {marker}; sleep 60"
        )
        wait_for(marker.exists, what="the step to start")
        kill_local_agents(server.settings)
        done = until_final(client, task_id)
    # A SIGKILLed agent cannot stop its step (steps run in sessions of their own): end it here.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(int(marker.read_text()), signal.SIGKILL)
    assert done["status"] == "lost"
    assert "ended (exit code -9)" in done["reason"]


def test_killing_the_control_plane_mid_task_loses_nothing(server: Server, shared: Path) -> None:
    marker = shared / "started"
    with api(server) as client:
        pool_id = local_pool(client, pods=1, slots=1)
        task_id = submit(client, pool_id, command=f"touch {marker}; sleep 3; echo finished")
        wait_for(marker.exists, what="the step to start")
    server.kill()
    time.sleep(1)
    server.start_again()
    with api(server) as client:
        done = until_final(client, task_id, seconds=90)
        log = client.get(f"{TASKS}/{task_id}/logs").text
        pods = client.get(f"/api/v1/agent-pools/{pool_id}/pods").json()["items"]
    assert done["status"] == "succeeded", done
    assert log == "finished\n"
    assert len(pods) == 1, "the same agent came back; no second one was started"


def test_a_freeze_removes_idle_pods_keeps_busy_ones_and_an_unfreeze_brings_them_back(
    server: Server, shared: Path
) -> None:
    release = shared / "release"
    with api(server) as client:
        pool_id = local_pool(client, pods=2, slots=1)
        busy = submit(
            client,
            pool_id,
            command=f"while [ ! -f {release} ]; do sleep 0.1; done; echo finished",
        )
        wait_for(lambda: task(client, busy)["status"] == "running", what="the task runs")
        busy_pod = task(client, busy)["pod_name"]

        # A window from a minute ago for an hour (overnight if it crosses midnight).
        start = datetime.now(UTC) - timedelta(minutes=1)
        window = {
            "from_time": start.strftime("%H:%M"),
            "to_time": (start + timedelta(hours=1)).strftime("%H:%M"),
            "weekdays": [start.isoweekday()],
            "timezone": "UTC",
        }
        added = client.post(f"/api/v1/agent-pools/{pool_id}/freeze-schedules", json=window)
        assert added.status_code == 201, added.text

        def live() -> set[str]:
            pods = client.get(f"/api/v1/agent-pools/{pool_id}/pods").json()["items"]
            return {p["name"] for p in pods if p["state"] not in ("failed", "deleted")}

        wait_for(lambda: live() == {busy_pod}, what="the idle pod to go", seconds=30)
        assert task(client, busy)["status"] == "running"  # the busy pod is not touched
        release.touch()
        assert until_final(client, busy)["status"] == "succeeded"
        wait_for(lambda: live() == set(), what="the pod to go once idle", seconds=30)
        time.sleep(2)  # passes go on every second: still nothing is created inside the window
        assert live() == set()

        lifted = client.post(f"/api/v1/agent-pools/{pool_id}/one-time-unfreeze", json={})
        assert lifted.status_code == 200, lifted.text
        wait_for(lambda: ready_pods(client, pool_id) == 2, what="pods back after the unfreeze")
