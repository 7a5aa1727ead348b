"""A leader stopped with SIGSTOP past its lease, then resumed, creates and deletes nothing.

It is stopped in the middle of an action: the Kubernetes client of every replica sends one
request a second here, so a scale-up by three Pods takes the leader about three seconds, and it
is stopped as soon as the first of them appears. While it is stopped the demand goes away (the
tasks that wanted the Pods are cancelled) and another replica takes the lead. When the stopped
one resumes, the rest of its scale-up is what it was about to do: fencing must refuse it. The
API server's Pods are watched all along, and the resumed replica's log (its Kubernetes client
logs every request) must show no write after it resumed.
"""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.e2e.helpers import wait_for
from tests.invariants import FINAL, violations
from tests.replicas.helpers import (
    TASKS,
    PodWatch,
    create_pool,
    k8s_config,
    new_namespace,
    pool_tasks,
    ready_pods,
    replica_set,
)
from tests.support.kube import K8sTestEnv
from tests.support.postgres import PostgresServer
from tests.support.replicas import LEASE_SECONDS

pytestmark = pytest.mark.postgres

KUBE_WRITE = re.compile(r"HTTP Request: (POST|PUT|PATCH|DELETE) https://\S+")
KUBE_DELETE = re.compile(r"HTTP Request: DELETE https://\S+/pods/([a-z0-9-]+)")


def test_a_leader_resumed_after_its_lease_ran_out_creates_and_deletes_nothing(
    pg_server: PostgresServer, k8s: K8sTestEnv, tmp_path: Path
) -> None:
    namespace = new_namespace("fencing")
    # No scale-down while the test looks: any Pod deleted is a stale decision (or an orphan's).
    config = k8s_config(
        namespace, slots_per_pod=1, min_replicas=1, max_replicas=4, scale_down_delay_seconds=600
    )
    with (
        # An agent whose connection was to the stopped replica waits out its request timeout
        # (30 s) before it tries another: not a silent agent to replace meanwhile.
        replica_set(
            pg_server,
            k8s,
            tmp_path,
            namespace,
            count=3,
            agent_timeout_seconds=90,
            kube_requests_per_second=1,
        ) as (replicas, _),
        PodWatch.of(k8s, namespace) as watch,
    ):
        with replicas.client() as client:
            pool_id = create_pool(client, config)
            wait_for(lambda: len(ready_pods(client, pool_id)) == 1, what="1 ready Pod", seconds=90)
        first = replicas.wait_leader(first_pass=True)
        stale = replicas.by_id(first["replica_id"])
        (follower, *_) = [r for r in replicas.replicas if r is not stale]
        before = watch.alive()

        with replicas.client_of(follower) as client:
            wanted = [
                client.post(TASKS, json={"pool_id": pool_id, "command": "sleep 600"})
                for _ in range(3)
            ]
            assert [w.status_code for w in wanted] == [201] * 3, [w.text for w in wanted]
            ids = [w.json()["id"] for w in wanted]
            # The leader's scale-up has begun: stopped in the middle of it.
            wait_for(lambda: watch.alive() - before, what="the first new Pod", seconds=60)
            replicas.freeze(stale)
            frozen_at = time.monotonic()
            created_before_freeze = len(watch.alive() - before)
            for task_id in ids:
                answer = client.post(f"{TASKS}/{task_id}/cancel")
                assert answer.status_code in (200, 409), answer.text
            second = replicas.wait_leader(after_term=first["term"], first_pass=True)
            assert second["replica_id"] != stale.replica_id

            # Past its lease for sure, then resumed; watched for three leases.
            time.sleep(max(0.0, frozen_at + 2 * LEASE_SECONDS - time.monotonic()))
            offset = len(stale.log_text())
            resumed = datetime.now(UTC)
            replicas.thaw(stale)
            time.sleep(3 * LEASE_SECONDS + 2)

            after = stale.log_text()[offset:]
            assert KUBE_WRITE.findall(after) == [], after[-4000:]
            assert f"lost leadership (term {first['term']})" in after, after[-4000:]
            # Nothing was created since; whatever was deleted, the new leader deleted.
            assert watch.created_since(resumed) == set(), (created_before_freeze, watch.first_seen)
            others = "".join(r.log_text() for r in replicas.replicas if r is not stale)
            by_others = set(KUBE_DELETE.findall(others))
            assert watch.deleted_since(resumed) <= by_others, (watch.deleted_at, by_others)
            now = replicas.leader_view(follower)
            assert now is not None
            assert (now["replica_id"], now["term"]) == (second["replica_id"], second["term"])

            def settled() -> bool:
                return all(t["status"] in FINAL for t in pool_tasks(client, pool_id))

            wait_for(settled, what="every task final", seconds=60)
            found = violations(client, pool_id, settled=True, may_end=frozenset(ids))
            assert found == [], "\n".join(found)
            print(f"\n{created_before_freeze} of 3 Pods created before the leader was stopped")
        assert watch.errors == [], watch.errors
