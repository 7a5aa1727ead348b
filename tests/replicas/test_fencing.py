"""A leader stopped with SIGSTOP past its lease, then resumed, creates and deletes nothing.

While it is stopped the demand changes under it: tasks arrive that need two more Pods, which the
next leader creates. The stopped leader's memory still holds the pool as it was (one Pod, no
work), so when it resumes it would want to act on that stale picture (new Pods it has not seen
look like orphans; busy Pods look idle): fencing must refuse every write it tries. What the API
server holds is watched all along, and the resumed replica's log must show no write to the
Kubernetes API (its client logs each request) after it resumed.
"""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.e2e.helpers import until_final, wait_for
from tests.invariants import violations
from tests.replicas.helpers import (
    TASKS,
    WAITS_FOR_LEASE,
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

pytestmark = [pytest.mark.postgres, WAITS_FOR_LEASE]

KUBE_WRITE = re.compile(r"HTTP Request: (POST|PUT|PATCH|DELETE) https://\S+")


def test_a_leader_resumed_after_its_lease_ran_out_creates_and_deletes_nothing(
    pg_server: PostgresServer, k8s: K8sTestEnv, tmp_path: Path
) -> None:
    namespace = new_namespace("fencing")
    config = k8s_config(namespace, slots_per_pod=1, min_replicas=1, max_replicas=3)
    with (
        # An agent whose connection was to the stopped replica waits out its request timeout
        # (30 s) before it tries another: not a silent agent to replace meanwhile.
        replica_set(pg_server, k8s, tmp_path, namespace, count=3, agent_timeout_seconds=90) as (
            replicas,
            _,
        ),
        PodWatch.of(k8s, namespace) as watch,
    ):
        with replicas.client() as client:
            pool_id = create_pool(client, config)
            wait_for(lambda: len(ready_pods(client, pool_id)) == 1, what="1 ready Pod", seconds=90)
        first = replicas.wait_leader(first_pass=True)
        stale = replicas.by_id(first["replica_id"])
        (follower, *_) = [r for r in replicas.replicas if r is not stale]

        replicas.freeze(stale)
        frozen_at = time.monotonic()
        releases = [tmp_path / f"release-{i}" for i in range(3)]
        with replicas.client_of(follower) as client:
            submitted = [
                client.post(
                    TASKS,
                    json={
                        "pool_id": pool_id,
                        "command": f"while [ ! -f {release} ]; do sleep 0.1; done; echo {i}",
                    },
                )
                for i, release in enumerate(releases)
            ]
            assert [s.status_code for s in submitted] == [201] * 3, [s.text for s in submitted]
            ids = [s.json()["id"] for s in submitted]
            second = replicas.wait_leader(after_term=first["term"], first_pass=True)
            assert second["replica_id"] != stale.replica_id

            def all_running() -> bool:
                return all(t["status"] == "running" for t in pool_tasks(client, pool_id))

            wait_for(all_running, what="3 tasks running on 3 Pods", seconds=90)
            held = {t["pod_name"] for t in pool_tasks(client, pool_id)}
            assert len(held) == 3

            # Past its lease for sure, then resumed; watched for three leases.
            time.sleep(max(0.0, frozen_at + 2 * LEASE_SECONDS - time.monotonic()))
            offset = len(stale.log_text())
            resumed = datetime.now(UTC)
            replicas.thaw(stale)
            time.sleep(3 * LEASE_SECONDS + 2)

            after = stale.log_text()[offset:]
            assert KUBE_WRITE.findall(after) == [], after[-4000:]
            assert f"lost leadership (term {first['term']})" in after, after[-4000:]
            assert watch.created_since(resumed) == set(), watch.first_seen
            assert watch.deleted_since(resumed) == set(), watch.deleted_at
            assert watch.alive() == held
            now = replicas.leader_view(follower)
            assert now is not None
            assert (now["replica_id"], now["term"]) == (second["replica_id"], second["term"])

            for release in releases:
                release.touch()
            assert [until_final(client, i)["status"] for i in ids] == ["succeeded"] * 3
            found = violations(client, pool_id, settled=True)
            assert found == [], "\n".join(found)
        assert watch.errors == [], watch.errors
