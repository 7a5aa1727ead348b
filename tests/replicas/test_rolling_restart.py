"""A rolling restart of all replicas, one at a time (SIGTERM: each hands over and drains, then
starts again), under continuous submissions through the proxy from a client that retries on
connection errors and 503, as any client behind a Service should: no task is lost, and no
request the client retries fails for good."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.helpers import wait_for
from tests.invariants import FINAL, violations
from tests.replicas.helpers import (
    TASKS,
    create_pool,
    k8s_config,
    new_namespace,
    pool_tasks,
    ready_pods,
    replica_set,
)
from tests.support.kube import K8sTestEnv
from tests.support.postgres import PostgresServer
from tests.support.replicas import ReplicaSet

pytestmark = pytest.mark.postgres

RETRY_SECONDS = 60.0  # a request still failing after this long has failed for good
RETRIED_STATUSES = {502, 503, 504}


@dataclass
class Submitter:
    """Submits a short task every ``every`` seconds through the proxy until stopped, retrying
    each one on a connection error or a 502/503/504 (new connection each time)."""

    replicas: ReplicaSet
    pool_id: str
    every: float = 0.15
    accepted: list[str] = field(default_factory=list)
    retries: int = 0
    failed: list[str] = field(default_factory=list)  # failed for good, with the last answer

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="submitter", daemon=True)

    def __enter__(self) -> Submitter:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=RETRY_SECONDS + 10)

    def _run(self) -> None:
        index = 0
        while not self._stop.is_set():
            self._submit({"pool_id": self.pool_id, "command": f"sleep 0.2; echo {index}"})
            index += 1
            self._stop.wait(self.every)

    def _submit(self, body: dict[str, Any]) -> None:
        deadline = time.monotonic() + RETRY_SECONDS
        last = ""
        while time.monotonic() < deadline:
            try:
                with self.replicas.client(timeout=10) as client:
                    answer = client.post(TASKS, json=body)
            except httpx.TransportError as exc:
                last = repr(exc)
            else:
                if answer.status_code == 201:
                    self.accepted.append(answer.json()["id"])
                    return
                last = f"{answer.status_code} {answer.text[:300]}"
                if answer.status_code not in RETRIED_STATUSES:
                    break
            self.retries += 1
            time.sleep(0.2)
        self.failed.append(last)


def test_a_rolling_restart_under_continuous_submissions_loses_nothing(
    pg_server: PostgresServer, k8s: K8sTestEnv, tmp_path: Path
) -> None:
    namespace = new_namespace("rolling")
    config = k8s_config(namespace, slots_per_pod=4, min_replicas=2, max_replicas=3)
    with replica_set(pg_server, k8s, tmp_path, namespace, count=3) as (replicas, _):
        with replicas.client() as client:
            pool_id = create_pool(client, config)
            wait_for(lambda: len(ready_pods(client, pool_id)) == 2, what="2 ready Pods", seconds=90)
        first = replicas.wait_leader(first_pass=True)

        with Submitter(replicas, pool_id) as submitter:
            time.sleep(2)
            handed_over = 0
            for replica, led in replicas.rolling_restart(grace=30):
                replicas.wait_leader(seconds=60)
                if led:  # it gave up leadership on SIGTERM rather than letting its lease run out
                    assert "gave up leadership" in replica.log_text(), replica.log_text()[-3000:]
                    handed_over += 1
            assert handed_over >= 1
            time.sleep(2)
        last = replicas.wait_leader(after_term=first["term"])

        assert submitter.failed == [], submitter.failed
        assert len(submitter.accepted) > 20
        with replicas.client() as client:

            def settled() -> bool:
                return all(t["status"] in FINAL for t in pool_tasks(client, pool_id))

            wait_for(settled, what="every task final", seconds=120, detail=replicas.logs)
            tasks = {t["id"]: t for t in pool_tasks(client, pool_id)}
            assert set(submitter.accepted) <= set(tasks)
            # A retried POST whose answer was cut off may have made a task too: none is lost.
            unfinished = [(t["id"], t["status"], t["reason"]) for t in tasks.values()]
            lost = [seen for seen in unfinished if seen[1] != "succeeded"]
            assert lost == [], lost
            found = violations(client, pool_id, settled=True)
            assert found == [], "\n".join(found)
        assert all(r.restarts == 1 for r in replicas.replicas)
        print(
            f"\nrolling restart: {len(submitter.accepted)} tasks accepted, "
            f"{submitter.retries} retries, leader term {first['term']} -> {last['term']}"
        )
