"""Three replicas on one PostgreSQL, a k8s pool on the test cluster, agents spread over the
replicas through the proxy, a burst of tasks submitted to random replicas, and the leader
SIGKILLed in the middle of it: another replica leads once the old lease has run out, every task
ends in a final state with its reason, no Pod with a busy or reserved slot is deleted, no slot
is given twice, and the pool never has more than ``max_replicas`` Pods (the API server's Pods
are listed all along, whoever creates them)."""

from __future__ import annotations

import random
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.helpers import wait_for
from tests.invariants import FINAL, violations
from tests.replicas.helpers import (
    TASKS,
    PodWatch,
    create_pool,
    deleted_while_held,
    k8s_config,
    new_namespace,
    pool_tasks,
    ready_pods,
    replica_set,
)
from tests.support.kube import K8sTestEnv
from tests.support.postgres import PostgresServer

pytestmark = pytest.mark.postgres

BURST = 36
MAX_REPLICAS = 3


def test_the_leader_killed_mid_burst_is_replaced_and_every_invariant_holds(
    pg_server: PostgresServer, k8s: K8sTestEnv, tmp_path: Path
) -> None:
    namespace = new_namespace("failover")
    rng = random.Random(13)
    config = k8s_config(namespace, slots_per_pod=3, max_replicas=MAX_REPLICAS)
    with (
        replica_set(pg_server, k8s, tmp_path, namespace, count=3) as (replicas, _),
        PodWatch.of(k8s, namespace) as watch,
        replicas.client() as client,
    ):
        pool_id = create_pool(client, config)
        first = replicas.wait_leader(first_pass=True)
        wait_for(lambda: ready_pods(client, pool_id), what="a ready Pod", seconds=90)

        submitted: list[str] = []
        gated: set[str] = set()
        killed_at: datetime | None = None
        before: dict[str, Any] | None = None
        for index in range(BURST):
            if index == BURST // 2:
                before = replicas.leader_view()
                assert before is not None
                assert before["replica_id"] == first["replica_id"]
                killed_at = datetime.now(UTC)
                replicas.kill(replicas.by_id(before["replica_id"]))
            target = rng.choice([r for r in replicas.replicas if r.answers()])
            body: dict[str, Any] = {"pool_id": pool_id}
            if index % 6 == 0:  # reserves its slot while it waits for approval
                body["steps"] = [
                    {"run": "sleep 0.5; echo plan"},
                    {"run": "echo apply", "requires_approval": True},
                ]
            else:
                body["command"] = f"sleep {rng.choice(['0.2', '0.6', '1.2', '2'])}; echo ok"
            with replicas.client_of(target) as direct:
                answer = direct.post(TASKS, json=body)
            assert answer.status_code == 201, answer.text
            submitted.append(answer.json()["id"])
            if "steps" in body:
                gated.add(answer.json()["id"])
            time.sleep(rng.uniform(0.05, 0.3))
        assert killed_at is not None
        assert before is not None

        # Another leads, with a newer term, and not before the dead one's lease ran out.
        second = replicas.wait_leader(after_term=before["term"], seconds=60)
        assert second["replica_id"] != before["replica_id"]
        since, expired = second["since"], before["lease_expires_at"]
        assert datetime.fromisoformat(since) >= datetime.fromisoformat(expired), (before, second)

        def settled() -> bool:
            open_tasks = [t for t in pool_tasks(client, pool_id) if t["status"] not in FINAL]
            for task in open_tasks:
                if task["status"] == "awaiting_approval":
                    client.post(f"{TASKS}/{task['id']}/approve")
            return not open_tasks

        wait_for(settled, what="every task final", seconds=150, detail=replicas.logs)
        tasks = pool_tasks(client, pool_id)

        # Agents were spread over the replicas, and the dead leader's were taken over.
        assert len([port for port, n in replicas.proxy.connections.items() if n > 0]) == 3

        assert sorted(t["id"] for t in tasks) == sorted(submitted)
        may_end = frozenset(t["id"] for t in tasks if cut_off_by_the_kill(t, killed_at))
        found = violations(client, pool_id, settled=True, may_end=may_end)
        assert found == [], "\n".join(found)
        assert deleted_while_held(watch, tasks) == []
        assert watch.most_alive <= MAX_REPLICAS, watch.first_seen
        assert watch.errors == [], watch.errors


def cut_off_by_the_kill(task: dict[str, Any], killed_at: datetime) -> bool:
    """A step handed out in a claim answer the SIGKILL cut off: the agent never got it, says so
    when it registers again, and the task is lost with that reason (not run twice)."""
    started = task["started_at"]
    return (
        task["status"] == "lost"
        and "re-registered without step" in (task["reason"] or "")
        and started is not None
        and datetime.fromisoformat(started) <= killed_at
    )
