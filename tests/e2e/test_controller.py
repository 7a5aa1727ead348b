"""The pool controller end to end on local pools: a real server process, real agent processes,
and the invariant checker over everything the server reports afterwards."""

from __future__ import annotations

import json
import subprocess
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from tests.e2e.conftest import Server, api
from tests.e2e.helpers import submit, task, until_final, wait_for
from tests.invariants import violations
from tests.support import processes

POOLS = "/api/v1/agent-pools"


def pool(client: httpx.Client, name: str, **config: Any) -> str:
    body = {"name": name, "pool_type": "local", "k8s_config": config}
    response = client.post(POOLS, json=body)
    assert response.status_code == 201, response.text
    pool_id: str = response.json()["pool_id"]
    return pool_id


def live_pods(client: httpx.Client, pool_id: str) -> list[dict[str, Any]]:
    pods = client.get(f"{POOLS}/{pool_id}/pods").json()["items"]
    return [p for p in pods if p["state"] not in ("failed", "deleted", "terminating")]


def events(client: httpx.Client, pool_id: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = client.get(f"{POOLS}/{pool_id}/events").json()["items"]
    return items


def test_scale_from_zero_and_back(server: Server) -> None:
    with api(server) as client:
        pool_id = pool(
            client,
            "zero",
            min_replicas=0,
            max_replicas=3,
            slots_per_pod=2,
            scale_down_delay_seconds=2,
        )
        time.sleep(1.5)  # the controller has passed over the pool: still nothing to run
        assert live_pods(client, pool_id) == []

        task_id = submit(client, pool_id, command="echo from zero")
        done = until_final(client, task_id)
        assert done["status"] == "succeeded"
        assert client.get(f"/api/v1/tasks/{task_id}/logs").text == "from zero\n"
        wait_for(lambda: live_pods(client, pool_id) == [], what="back to zero", seconds=30)

        log = events(client, pool_id)
        created = [e for e in log if e["action"] == "create_pods" and e["outcome"] == "done"]
        assert [e["reason"] for e in created] == ["scale_up"]
        assert created[0]["inputs"]["inputs"]["queued"] == 1
        assert created[0]["inputs"]["desired_pods"] == 1
        removed = [e for e in log if e["action"] == "delete_pod" and e["outcome"] == "done"]
        assert [(e["reason"], e["pod"]) for e in removed] == [("scale_down", done["pod_name"])]
        assert "idle for" in removed[0]["message"]
        assert violations(client, pool_id) == []


def test_a_burst_scales_to_max_replicas_and_back_to_min_removing_only_idle_pods(
    server: Server,
) -> None:
    with api(server) as client:
        pool_id = pool(
            client,
            "burst",
            min_replicas=1,
            max_replicas=5,
            slots_per_pod=4,
            scale_down_delay_seconds=2,
        )
        wait_for(lambda: len(live_pods(client, pool_id)) == 1, what="min_replicas")
        ids = [submit(client, pool_id, command="sleep 2") for _ in range(40)]
        most = 0
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            most = max(most, len(live_pods(client, pool_id)))
            states = {task(client, t)["status"] for t in ids[-5:]}
            if states == {"succeeded"}:
                break
            time.sleep(0.2)
        done = [until_final(client, t, seconds=120) for t in ids]
        assert [t["status"] for t in done] == ["succeeded"] * 40
        assert most == 5

        spans = sorted(
            (datetime.fromisoformat(t["started_at"]), datetime.fromisoformat(t["finished_at"]))
            for t in done
        )
        peak = max(sum(1 for s, f in spans if s <= start < f) for start, _ in spans)
        assert peak <= 20
        assert len({t["pod_name"] for t in done}) <= 5

        wait_for(
            lambda: len(live_pods(client, pool_id)) == 1,
            what="back to min",
            seconds=60,
            detail=lambda: (
                [(p["name"], p["state"], p["reason"]) for p in live_pods(client, pool_id)],
                [(e["action"], e["reason"], e["message"]) for e in events(client, pool_id)[:8]],
            ),
        )
        log = events(client, pool_id)
        downs = [e for e in log if e["action"] == "delete_pod" and e["outcome"] == "done"]
        assert len(downs) == 4
        assert {e["reason"] for e in downs} == {"scale_down"}
        holds = {e["reason"] for e in log if e["action"] == "hold"}
        assert "max_replicas" in holds
        assert violations(client, pool_id) == []


def test_deleting_a_pool_is_refused_while_work_runs_unless_forced(
    server: Server, shared: Path
) -> None:
    release = shared / "release"
    data = Path(server.env["SLOTPOOL_DATA_DIR"]) / "local-runtime"
    with api(server) as client:
        pool_id = pool(client, "doomed", min_replicas=1, max_replicas=1, slots_per_pod=1)
        running = submit(client, pool_id, command=f"while [ ! -f {release} ]; do sleep 0.1; done")
        try:
            wait_for(lambda: task(client, running)["status"] == "running", what="the task runs")
            (agent,) = live_pods(client, pool_id)

            refused = client.delete(f"{POOLS}/{pool_id}")
            assert refused.status_code == 409, refused.text
            assert "force=true" in refused.json()["error"]
            assert task(client, running)["status"] == "running"

            assert client.delete(f"{POOLS}/{pool_id}", params={"force": "true"}).status_code == 204
            assert client.get(f"{POOLS}/{pool_id}").status_code == 404
        finally:
            # The agent was killed with the pool, its step (a session of its own) was not: the
            # file ends the step's loop, or it would wait for it forever.
            release.touch()
    assert not (data / "pods" / f"{agent['name']}.json").exists()  # its process was ended
    assert not (data / "secrets" / f"slotpool-agent-token-{pool_id}.json").exists()


def test_a_restarted_control_plane_removes_pods_of_pools_that_no_longer_exist(
    server: Server, tmp_path: Path
) -> None:
    """An agent process recorded for a pool that is gone (its pool deleted while the control
    plane was down, say) is found by the orphan sweep of the next start and ended."""
    pods = Path(server.env["SLOTPOOL_DATA_DIR"]) / "local-runtime" / "pods"
    pods.mkdir(parents=True, exist_ok=True)
    ghost = subprocess.Popen(["sleep", "300"], start_new_session=True)
    try:
        record = {
            "name": "slotpool-pool-0000000000000000-ghost",
            "pool_id": "pool-0000000000000000",
            "pid": ghost.pid,
            "start_time": start_time(ghost.pid),  # recorded so: the pid is still that process
            "config_hash": "x",
            "created_at": datetime.now(UTC).isoformat(),
        }
        server.kill()
        (pods / f"{record['name']}.json").write_text(json.dumps(record))
        server.start_again()
        wait_for(lambda: ghost.poll() is not None, what="the orphan to be ended", seconds=30)
        wait_for(lambda: not (pods / f"{record['name']}.json").exists(), what="its record to go")
    finally:
        ghost.kill()
        ghost.wait()


def start_time(pid: int) -> int:
    found = processes.stat(pid)
    assert found is not None
    return found.start_time


def test_a_change_freeze_holds_queued_tasks_and_says_why_and_until_when(server: Server) -> None:
    with api(server) as client:
        pool_id = pool(client, "frozen", min_replicas=1, max_replicas=2, slots_per_pod=1)
        wait_for(lambda: len(live_pods(client, pool_id)) == 1, what="min_replicas")
        start = datetime.now(UTC) - timedelta(minutes=1)
        end = start + timedelta(hours=1)
        window = {
            "from_time": start.strftime("%H:%M"),
            "to_time": end.strftime("%H:%M"),
            "weekdays": [start.isoweekday()],
            "timezone": "UTC",
            "policy": "no_new_tasks",
        }
        added = client.post(f"{POOLS}/{pool_id}/freeze-schedules", json=window)
        assert added.status_code == 201, added.text
        wait_for(lambda: live_pods(client, pool_id) == [], what="the idle Pod to go")

        waiting = submit(client, pool_id, command="echo after the freeze")

        def explained() -> bool:
            reason: str = task(client, waiting)["reason"]
            return reason.startswith("waiting: change freeze (no_new_tasks) until ")

        wait_for(explained, what="the task to say why it waits")
        found = task(client, waiting)
        assert found["status"] == "queued"
        assert end.strftime("%H:%M UTC") in found["reason"]
        time.sleep(1.5)  # passes and dispatches go on: still nothing runs inside the window
        assert task(client, waiting)["status"] == "queued"
        assert live_pods(client, pool_id) == []

        assert client.post(f"{POOLS}/{pool_id}/one-time-unfreeze", json={}).status_code == 200
        done = until_final(client, waiting)
        assert done["status"] == "succeeded"
        assert done["reason"] == ""
        holds = [e for e in events(client, pool_id) if e["action"] == "hold"]
        assert any(e["reason"] == "frozen" for e in holds)
        assert violations(client, pool_id) == []
