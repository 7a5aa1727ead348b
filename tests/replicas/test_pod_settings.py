"""Two replicas with a different ``SLOTPOOL_PUBLIC_URL`` do not rebuild each other's Pods: every
replica builds Pods and config hashes with the leader's values, and the one that disagrees says
so (``/api/v1/cluster``) instead of acting on its own. Before, two such servers rebuilt each
other's Pods as outdated about 20 times a minute.

Both URLs reach the replicas (the proxy, by address and by name), so the agents work whichever
replica leads: only what the Pods are built with differs.
"""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest
from lightkube import Client, KubeConfig
from lightkube.resources.core_v1 import Pod

from tests.e2e.helpers import wait_for
from tests.replicas.helpers import (
    POOLS,
    PodWatch,
    create_pool,
    k8s_config,
    new_namespace,
    pool_pods,
    ready_pods,
    replica_set,
)
from tests.support.kube import K8sTestEnv
from tests.support.postgres import PostgresServer

pytestmark = pytest.mark.postgres

QUIET_SECONDS = 60.0
REBUILDING = {"rebuild_pod", "delete_pod", "create_pods"}


def test_replicas_with_different_public_urls_do_not_rebuild_each_others_pods(
    pg_server: PostgresServer, k8s: K8sTestEnv, tmp_path: Path
) -> None:
    namespace = new_namespace("url")
    other = {1: "http://localhost:{proxy_port}"}
    config = k8s_config(namespace, min_replicas=2, max_replicas=2)
    with (
        replica_set(pg_server, k8s, tmp_path, namespace, count=2, public_urls=other) as (
            replicas,
            _,
        ),
        PodWatch.of(k8s, namespace) as watch,
        replicas.client() as client,
    ):
        urls = {r.replica_id: r.server.settings.public_url for r in replicas.replicas}
        assert len(set(urls.values())) == 2
        pool_id = create_pool(client, config)
        wait_for(lambda: len(ready_pods(client, pool_id)) == 2, what="2 ready Pods", seconds=90)
        leader = replicas.wait_leader(first_pass=True)
        (follower,) = [r for r in replicas.replicas if r.replica_id != leader["replica_id"]]

        # The disagreement is shown, on the follower's own view as on the leader's.
        cluster = replicas.cluster(follower)
        assert cluster is not None
        seen = {r["replica_id"]: r for r in cluster["replicas"]}
        assert seen[leader["replica_id"]]["agrees_with_leader"] is True
        assert seen[follower.replica_id]["agrees_with_leader"] is False
        assert any("public_url" in d for d in seen[follower.replica_id]["disagreements"]), seen
        assert seen[follower.replica_id]["pod_settings"]["public_url"] == urls[follower.replica_id]

        before = watch.alive()
        events_before = rebuilding_events(client, pool_id)
        started = time.monotonic()
        while time.monotonic() - started < QUIET_SECONDS:
            # Read on both: neither sees the Pods as outdated.
            for replica in replicas.replicas:
                with replicas.client_of(replica) as direct:
                    outdated = [p["name"] for p in pool_pods(direct, pool_id) if p["outdated"]]
                assert outdated == [], (replica.replica_id, outdated)
            time.sleep(2)

        assert watch.alive() == before, (before, watch.first_seen, watch.deleted_at)
        assert set(watch.first_seen) == before
        assert rebuilding_events(client, pool_id) == events_before
        # The Pods carry the leader's URL.
        kube = Client(KubeConfig.from_file(k8s.kubeconfig), field_manager="slotpool-replicas")
        for pod in kube.list(Pod, namespace=namespace):
            assert pod.spec is not None
            env = {e.name: e.value for e in pod.spec.containers[0].env or []}
            assert env["SLOTPOOL_SERVER_URL"] == urls[leader["replica_id"]]
        assert watch.errors == [], watch.errors


def rebuilding_events(client: httpx.Client, pool_id: str) -> int:
    """How many Pod creations, deletions and rebuilds the pool's decision log holds."""
    items = client.get(f"{POOLS}/{pool_id}/events", params={"limit": 500}).json()["items"]
    return sum(1 for e in items if e["action"] in REBUILDING and e["outcome"] == "done")
