"""k8s pools end to end on a real API server: the server creates bare Pods from the one builder,
kwok runs them on fake Nodes, ``AgentKubelet`` starts each Running Pod's agent with the Pod's
environment and the token from the real Secret, and tasks run through the real protocol.

The server's background pass is off here (``pod_sync_seconds=0``), so every change to the
cluster in these tests is made by the request under test (``sync-deployment``, a config save),
not by a loop that happened to run first.
"""

from __future__ import annotations

import base64
import itertools
import secrets
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from lightkube import Client, KubeConfig
from lightkube.models.core_v1 import LimitRangeItem, LimitRangeSpec
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.core_v1 import LimitRange, Namespace, Pod, Secret

from slotpool.settings import Settings
from tests.e2e.helpers import TASKS, scrape, submit, task, total, until_final, wait_for
from tests.support.kube import K8sTestEnv
from tests.support.kubelet import AgentKubelet
from tests.support.ports import free_port
from tests.support.server import live_server

ADMIN = "k8s-e2e-admin-token-0123456789abcdef"
POOLS = "/api/v1/agent-pools"
REBUILDING = "K8s configuration updated successfully and idle pods are being rebuilt"
_namespaces = itertools.count(1)


@dataclass
class Cluster:
    url: str
    kube: Client
    kubelet: AgentKubelet
    work: Path

    def api(self) -> httpx.Client:
        headers = {"Authorization": f"Bearer {ADMIN}"}
        return httpx.Client(base_url=self.url, headers=headers, timeout=60)

    def live_pods(self, namespace: str) -> list[Pod]:
        return [
            p
            for p in self.kube.list(Pod, namespace=namespace)
            if p.metadata is not None and p.metadata.deletionTimestamp is None
        ]


@pytest.fixture(scope="module")
def cluster(k8s: K8sTestEnv) -> Iterator[Cluster]:
    work = Path(tempfile.mkdtemp(prefix="slotpool-k8s-e2e-"))
    port = free_port()
    settings = Settings(
        database_url=f"sqlite:///{work}/slotpool.db",
        data_dir=work / "data",
        admin_token=ADMIN,
        public_url=f"http://127.0.0.1:{port}",
        local_runtime=False,
        kubeconfig=k8s.kubeconfig,
        pod_sync_seconds=0,
        log_level="warning",
    )
    kube = Client(KubeConfig.from_file(k8s.kubeconfig), field_manager="slotpool-tests")
    with (
        live_server(settings, port=port) as served,
        AgentKubelet(k8s.kubeconfig, work / "agents") as kubelet,
    ):
        yield Cluster(served.url, kube, kubelet, work)
    assert kubelet.errors == [], kubelet.errors


def new_namespace() -> str:
    return f"slotpool-e2e-{next(_namespaces)}"


def config(namespace: str, **overrides: Any) -> dict[str, Any]:
    return {
        "image": "registry.example/slotpool-agent:1",
        "image_pull_policy": "IfNotPresent",
        "resources": {
            "requests": {"cpu": "100m", "memory": "64Mi"},
            "limits": {"cpu": "500m", "memory": "256Mi"},
        },
        "slots_per_pod": 1,
        "min_replicas": 1,
        "max_replicas": 5,
        "namespace": namespace,
        **overrides,
    }


def k8s_pool(client: httpx.Client, k8s_config: dict[str, Any]) -> str:
    name = k8s_config["namespace"]  # one pool per namespace here, so a unique name
    body = {"name": name, "pool_type": "k8s", "k8s_config": k8s_config}
    response = client.post(POOLS, json=body)
    assert response.status_code == 201, response.text
    pool_id: str = response.json()["pool_id"]
    return pool_id


def sync(client: httpx.Client, pool_id: str) -> dict[str, Any]:
    response = client.post(f"{POOLS}/{pool_id}/sync-deployment")
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    assert answer["message"] == "Pod configuration synced successfully"
    return answer


def pods(client: httpx.Client, pool_id: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = client.get(f"{POOLS}/{pool_id}/pods").json()["items"]
    return items


def ready(client: httpx.Client, pool_id: str) -> set[str]:
    return {p["name"] for p in pods(client, pool_id) if p["state"] == "ready"}


def put_config(client: httpx.Client, pool_id: str, k8s_config: dict[str, Any]) -> httpx.Response:
    return client.put(f"{POOLS}/{pool_id}/k8s-config", json=k8s_config)


def image_of(pod: Pod) -> str | None:
    assert pod.spec is not None
    return pod.spec.containers[0].image


def name_of(pod: Pod) -> str:
    assert pod.metadata is not None
    assert pod.metadata.name is not None
    return pod.metadata.name


def hash_of(pod: Pod) -> str:
    assert pod.metadata is not None
    assert pod.metadata.annotations is not None
    digest: str = pod.metadata.annotations["slotpool.io/config-hash"]
    return digest


def waiting_step(release: Path, text: str) -> str:
    return f"while [ ! -f {release} ]; do sleep 0.1; done; echo {text}"


def test_saved_config_reaches_the_pods_and_changes_rebuild_only_idle_ones(
    cluster: Cluster,
) -> None:
    namespace = new_namespace()
    first = config(namespace, min_replicas=3)
    with cluster.api() as client:
        pool_id = k8s_pool(client, first)
        answer = sync(client, pool_id)
        assert answer["secret"] == "created"
        assert len(answer["created"]) == 3
        wait_for(lambda: len(ready(client, pool_id)) == 3, what="3 ready pods", seconds=90)

        # The running Pods carry the saved config.
        current = client.get(f"{POOLS}/{pool_id}").json()["config_hash"]
        running = cluster.live_pods(namespace)
        assert len(running) == 3
        for pod in running:
            assert pod.spec is not None
            container = pod.spec.containers[0]
            assert container.image == "registry.example/slotpool-agent:1"
            assert container.imagePullPolicy == "IfNotPresent"
            assert container.resources is not None
            assert container.resources.limits is not None
            assert container.resources.limits == {"cpu": "500m", "memory": "256Mi"}
            assert hash_of(pod) == current

        # One Pod runs a task; a config change replaces the two idle Pods only.
        release_a = cluster.work / f"release-{pool_id}-a"
        busy_task = submit(client, pool_id, command=waiting_step(release_a, "done-a"))
        wait_for(lambda: task(client, busy_task)["status"] == "running", what="task a runs")
        busy_pod = task(client, busy_task)["pod_name"]
        before = {name_of(p) for p in cluster.live_pods(namespace)}

        second = {**first, "image": "registry.example/slotpool-agent:2"}
        saved = put_config(client, pool_id, second)
        assert saved.status_code == 200, saved.text
        assert saved.json()["message"] == REBUILDING
        rebuild = saved.json()["rebuild"]
        assert sorted(rebuild["rebuilt"]) == sorted(before - {busy_pod})
        assert rebuild["kept_busy"] == [busy_pod]
        hash_2 = saved.json()["config_hash"]
        assert hash_2 != current

        after = {name_of(p): p for p in cluster.live_pods(namespace)}
        assert len(after) == 3
        assert set(after) & before == {busy_pod}  # new names for the two idle ones
        assert image_of(after[busy_pod]) == "registry.example/slotpool-agent:1"
        assert hash_of(after[busy_pod]) == current
        for name in set(after) - {busy_pod}:
            assert image_of(after[name]) == "registry.example/slotpool-agent:2"
            assert hash_of(after[name]) == hash_2
        assert task(client, busy_task)["status"] == "running"

        # A slot reserved by a task awaiting approval keeps its Pod the same way.
        wait_for(lambda: len(ready(client, pool_id)) == 3, what="replacements ready", seconds=90)
        gated = submit(
            client,
            pool_id,
            steps=[{"run": "echo plan"}, {"run": "echo apply", "requires_approval": True}],
        )
        wait_for(
            lambda: task(client, gated)["status"] == "awaiting_approval", what="gated task waits"
        )
        reserved_pod = task(client, gated)["pod_name"]
        assert reserved_pod != busy_pod
        third = {**first, "image": "registry.example/slotpool-agent:3"}
        saved = put_config(client, pool_id, third)
        assert saved.status_code == 200, saved.text
        rebuild = saved.json()["rebuild"]
        assert sorted(rebuild["kept_busy"]) == sorted([busy_pod, reserved_pod])
        assert len(rebuild["rebuilt"]) == 1
        alive = {name_of(p): p for p in cluster.live_pods(namespace)}
        assert {busy_pod, reserved_pod} <= set(alive)
        assert image_of(alive[reserved_pod]) == "registry.example/slotpool-agent:2"
        assert task(client, gated)["status"] == "awaiting_approval"
        assert task(client, busy_task)["status"] == "running"

        # Nothing was interrupted: both tasks finish on their Pods.
        release_a.touch()
        assert client.post(f"{TASKS}/{gated}/approve").status_code == 200
        done_a, done_gated = until_final(client, busy_task), until_final(client, gated)
        assert (done_a["status"], done_a["pod_name"]) == ("succeeded", busy_pod)
        assert (done_gated["status"], done_gated["pod_name"]) == ("succeeded", reserved_pod)
        assert client.get(f"{TASKS}/{busy_task}/logs").text == "done-a\n"
        assert client.get(f"{TASKS}/{gated}/logs").text == "plan\napply\n"

        # Once idle, the outdated Pods are rebuilt too: every Pod carries the third config.
        answer = sync(client, pool_id)
        assert sorted(answer["rebuilt"]) == sorted([busy_pod, reserved_pod])
        final = cluster.live_pods(namespace)
        assert len(final) == 3
        assert {image_of(p) for p in final} == {"registry.example/slotpool-agent:3"}
        assert {hash_of(p) for p in final} == {saved.json()["config_hash"]}


def test_sync_recreates_deleted_pods_and_the_deleted_secret(cluster: Cluster) -> None:
    namespace = new_namespace()
    with cluster.api() as client:
        pool_id = k8s_pool(client, config(namespace, min_replicas=2))
        sync(client, pool_id)
        wait_for(lambda: len(ready(client, pool_id)) == 2, what="2 ready pods", seconds=90)
        old = {name_of(p) for p in cluster.live_pods(namespace)}

        # Behind slotpool's back: both Pods and the token Secret go.
        for name in old:
            cluster.kube.delete(Pod, name, namespace=namespace)
        secret_name = f"slotpool-agent-token-{pool_id}"
        cluster.kube.delete(Secret, secret_name, namespace=namespace)

        answer = sync(client, pool_id)
        assert answer["secret"] == "created"
        assert len(answer["created"]) == 2
        new = {name_of(p) for p in cluster.live_pods(namespace)}
        assert len(new) == 2
        assert not new & old
        # The recreated Secret holds a working token: the new Pods' agents read it from the
        # Secret and register with it.
        wait_for(lambda: ready(client, pool_id) == new, what="new pods ready", seconds=90)
        token = cluster.kube.get(Secret, secret_name, namespace=namespace)
        assert token.data is not None
        assert "token" in token.data

        # Tasks run on the recreated Pods.
        task_id = submit(client, pool_id, command="echo after-sync")
        done = until_final(client, task_id)
        assert (done["status"], done["pod_name"] in new) == ("succeeded", True)
        # The Pods that went away are in the books as ended.
        gone = sync(client, pool_id)
        by_name = {p["name"]: p for p in pods(client, pool_id)}
        assert all(by_name[name]["state"] == "failed" for name in old), (gone, by_name)


def test_an_agent_proves_its_pod_with_the_uid_the_api_server_reports(cluster: Cluster) -> None:
    """The real agent registers with its Pod's UID (the downward API) and runs a task; the
    Secret's token with a wrong UID, none, or for a name slotpool did not create is refused,
    and with the right UID too once the Pod's agent registered."""
    namespace = new_namespace()
    with cluster.api() as client:
        pool_id = k8s_pool(client, config(namespace))
        sync(client, pool_id)
        wait_for(lambda: len(ready(client, pool_id)) == 1, what="1 ready pod", seconds=90)
        (pod,) = cluster.live_pods(namespace)
        assert pod.metadata is not None
        name, uid = name_of(pod), pod.metadata.uid
        secret = cluster.kube.get(Secret, f"slotpool-agent-token-{pool_id}", namespace=namespace)
        assert secret.data is not None
        token = base64.b64decode(secret.data["token"]).decode()

        def register(agent: str, pod_uid: str | None) -> httpx.Response:
            body = {"name": agent, "slots": 1, "credential": "spa_" + secrets.token_urlsafe(32)}
            if pod_uid is not None:
                body["pod_uid"] = pod_uid
            return httpx.post(
                f"{cluster.url}/api/v1/agent/pools/{pool_id}/register",
                json=body,
                headers={"Authorization": f"Bearer {token}"},
            )

        assert register(f"slotpool-{pool_id}-fake0", uid).status_code == 403
        assert register(name, None).status_code == 403
        wrong = register(name, "00000000-0000-0000-0000-000000000000")
        assert wrong.status_code == 403, wrong.text
        assert "is not the uid of pod" in wrong.json()["error"]
        taken = register(name, uid)
        assert taken.status_code == 409, taken.text

        task_id = submit(client, pool_id, command="echo proven")
        done = until_final(client, task_id)
        log = client.get(f"{TASKS}/{task_id}/logs").text
    assert (done["status"], done["pod_name"], log) == ("succeeded", name, "proven\n")


def test_a_pod_that_no_node_can_take_stays_pending_with_the_schedulers_reason(
    cluster: Cluster,
) -> None:
    namespace = new_namespace()
    huge = config(
        namespace, resources={"requests": {"cpu": "64"}, "limits": {"cpu": "64", "memory": "1Gi"}}
    )
    with cluster.api() as client:
        pool_id = k8s_pool(client, huge)
        assert len(sync(client, pool_id)["created"]) == 1

        def reported() -> bool:
            pending = sync(client, pool_id)["pending"]
            return len(pending) == 1 and "Insufficient cpu" in pending[0]["reason"]

        wait_for(reported, what="the scheduler's reason", seconds=60)
        (pod,) = pods(client, pool_id)
        assert (pod["state"], pod["phase"], pod["node"]) == ("pending", "Pending", None)
        assert pod["reason"].startswith("Unschedulable: 0/3 nodes are available")
        assert "Insufficient cpu" in pod["reason"]
        assert len(cluster.live_pods(namespace)) == 1  # stays; stuck Pods are the controller's


def limited_namespace(cluster: Cluster, max_cpu: str) -> str:
    """A namespace whose LimitRange admits no container above ``max_cpu``: an admission rule
    slotpool's own validation cannot know, only the API server can."""
    namespace = new_namespace()
    labels = {"pod-security.kubernetes.io/enforce": "restricted"}
    cluster.kube.create(Namespace(metadata=ObjectMeta(name=namespace, labels=labels)))
    limit = LimitRangeItem(type="Container", max={"cpu": max_cpu})
    cluster.kube.create(
        LimitRange(
            metadata=ObjectMeta(name="cpu-cap", namespace=namespace),
            spec=LimitRangeSpec(limits=[limit]),
        )
    )
    return namespace


def test_preview_dry_run_lets_the_api_server_answer_before_anything_is_saved(
    cluster: Cluster,
) -> None:
    namespace = limited_namespace(cluster, max_cpu="1")
    with cluster.api() as client:
        pool_id = k8s_pool(client, config(namespace))
        preview = f"{POOLS}/{pool_id}/pod-preview"
        fine = client.get(preview, params={"dry_run": "true"})
        assert fine.status_code == 200, fine.text
        assert yaml.safe_load(fine.text)["kind"] == "Pod"

        too_big = config(namespace, resources={"limits": {"cpu": "2", "memory": "256Mi"}})
        refused = client.post(preview, params={"dry_run": "true"}, json=too_big)
        assert refused.status_code == 422, refused.text
        (detail,) = refused.json()["details"]
        assert detail["field"] == "k8s_config"
        assert "maximum cpu usage per Container is 1" in detail["message"]
        # Without the dry run, slotpool alone cannot know and shows the Pod.
        assert client.post(preview, json=too_big).status_code == 200
        assert cluster.live_pods(namespace) == []  # nothing was created


def test_a_cluster_failure_after_the_save_answers_with_the_seeds_message(
    cluster: Cluster,
) -> None:
    namespace = limited_namespace(cluster, max_cpu="1")
    with cluster.api() as client:
        pool_id = k8s_pool(client, config(namespace))
        sync(client, pool_id)
        too_big = config(namespace, resources={"limits": {"cpu": "2", "memory": "256Mi"}})
        response = put_config(client, pool_id, too_big)
        assert response.status_code == 502, response.text
        error = response.json()["error"]
        assert error.startswith("K8s config updated but failed to rebuild idle pods: ")
        assert "maximum cpu usage per Container is 1" in error
        saved = client.get(f"{POOLS}/{pool_id}/k8s-config").json()
        assert saved["resources"]["limits"]["cpu"] == "2"  # the save itself stands


def test_deleting_a_pool_deletes_its_pods_and_secret_but_not_while_work_runs(
    cluster: Cluster,
) -> None:
    namespace = new_namespace()
    with cluster.api() as client:
        pool_id = k8s_pool(client, config(namespace, min_replicas=2))
        sync(client, pool_id)
        wait_for(lambda: len(ready(client, pool_id)) == 2, what="2 ready pods", seconds=90)
        release = cluster.work / f"release-{pool_id}"
        running = submit(client, pool_id, command=waiting_step(release, "done"))
        wait_for(lambda: task(client, running)["status"] == "running", what="the task runs")

        refused = client.delete(f"{POOLS}/{pool_id}")
        assert refused.status_code == 409, refused.text
        assert "1 tasks queued, running or awaiting approval" in refused.json()["error"]
        assert len(cluster.live_pods(namespace)) == 2  # nothing was touched

        release.touch()
        assert until_final(client, running)["status"] == "succeeded"
        assert client.delete(f"{POOLS}/{pool_id}").status_code == 204
        assert client.get(f"{POOLS}/{pool_id}").status_code == 404
    assert cluster.live_pods(namespace) == []
    secrets = cluster.kube.list(Secret, namespace=namespace)
    assert [s.metadata.name for s in secrets if s.metadata is not None] == []


def test_rotating_the_secrets_token_rebuilds_idle_pods_and_revokes_the_old_token_once_unused(
    cluster: Cluster,
) -> None:
    namespace = new_namespace()
    with cluster.api() as client:
        pool_id = k8s_pool(client, config(namespace, min_replicas=2))
        sync(client, pool_id)
        wait_for(lambda: len(ready(client, pool_id)) == 2, what="2 ready pods", seconds=90)
        secret_name = f"slotpool-agent-token-{pool_id}"
        before = cluster.kube.get(Secret, secret_name, namespace=namespace).data
        old_token = client.get(f"{POOLS}/{pool_id}").json()["agent_token"]
        release = cluster.work / f"release-{pool_id}"
        busy_task = submit(client, pool_id, command=waiting_step(release, "done"))
        wait_for(lambda: task(client, busy_task)["status"] == "running", what="the task runs")
        busy_pod = task(client, busy_task)["pod_name"]
        (idle_pod,) = ready(client, pool_id) - {busy_pod}

        response = client.post(
            f"{POOLS}/{pool_id}/tokens/{old_token}/rotate", json={"overlap_seconds": 600}
        )
        assert response.status_code == 200, response.text
        rotated = response.json()
        assert rotated["secret"] is True
        assert rotated["token"] is None  # the value lives only in the Secret
        assert rotated["rebuild"]["rebuilt"] == [idle_pod]
        assert rotated["rebuild"]["kept_busy"] == [busy_pod]
        assert rotated["old"]["status"] == "active"  # still valid: a Pod runs with it
        new_token = rotated["new"]["name"]
        assert cluster.kube.get(Secret, secret_name, namespace=namespace).data != before
        pool = client.get(f"{POOLS}/{pool_id}").json()
        assert (pool["agent_token"], pool["token_generation"]) == (new_token, 1)

        # The replacement's agent registers with the new token; the busy Pod's task finishes.
        (replacement,) = rotated["rebuild"]["created"]
        wait_for(lambda: replacement in ready(client, pool_id), what="replacement ready")
        release.touch()
        assert until_final(client, busy_task)["status"] == "succeeded"

        # Once idle the last Pod with the old token is rebuilt, and then the old token goes.
        assert sync(client, pool_id)["rebuilt"] == [busy_pod]

        def old_revoked() -> bool:
            sync(client, pool_id)
            status: str = client.get(f"{POOLS}/{pool_id}/tokens/{old_token}").json()["status"]
            return status == "revoked"

        wait_for(old_revoked, what="the old token revoked", seconds=60)
        log = client.get(f"{POOLS}/{pool_id}/events").json()["items"]
        actions = [e["action"] for e in log]
        assert "rotate_token" in actions
        assert "revoke_token" in actions
        assert all(
            p["config_hash"] == pool["config_hash"]
            for p in pods(client, pool_id)
            if p["state"] not in ("failed", "deleted", "terminating")
        )


# -- a running Pod's manifest: what the cluster holds ------------------------------------------


def test_a_running_pods_manifest_is_what_the_cluster_holds(cluster: Cluster) -> None:
    namespace = new_namespace()
    with cluster.api() as client:
        pool_id = k8s_pool(client, config(namespace, min_replicas=1))
        sync(client, pool_id)
        (pod,) = pods(client, pool_id)
        url = f"{POOLS}/{pool_id}/pods/{pod['name']}/manifest"
        answer = client.get(url)
        assert answer.status_code == 200, answer.text
        assert answer.headers["content-type"].startswith("application/yaml")
        manifest = yaml.safe_load(answer.text)
        assert (manifest["kind"], manifest["metadata"]["name"]) == ("Pod", pod["name"])
        assert manifest["metadata"]["uid"]  # the cluster's object, not a rebuilt preview
        assert manifest["spec"]["dnsPolicy"] == "ClusterFirst"  # a default the API server added
        assert "status" not in manifest
        assert "managedFields" not in manifest["metadata"]
        as_json = client.get(url, params={"format": "json"}).json()
        # The same object. Between the two reads the Pod may move on (it starts), which changes
        # its resourceVersion; nothing else shown here changes.
        for read in (as_json, manifest):
            read["metadata"].pop("resourceVersion")
        assert as_json == manifest

        missing = client.get(f"{POOLS}/{pool_id}/pods/no-such-pod/manifest")
        assert missing.status_code == 404, missing.text
        assert "has no Pod no-such-pod" in missing.json()["error"]

        # Another pool's Pod in the same namespace is not this pool's.
        other = client.post(
            POOLS,
            json={"name": f"{namespace}-b", "pool_type": "k8s", "k8s_config": config(namespace)},
        ).json()["pool_id"]
        foreign = client.get(f"{POOLS}/{other}/pods/{pod['name']}/manifest")
        assert foreign.status_code == 404, foreign.text


def test_a_static_pools_agents_have_no_manifest(cluster: Cluster) -> None:
    with cluster.api() as client:
        created = client.post(POOLS, json={"name": "manifest-static", "pool_type": "static"})
        pool_id = created.json()["pool_id"]
        answer = client.get(f"{POOLS}/{pool_id}/pods/any-agent/manifest")
        assert answer.status_code == 409, answer.text
        assert "have no manifest" in answer.json()["error"]


def test_the_kubernetes_api_requests_are_counted_and_timed_by_verb_resource_and_code(
    cluster: Cluster,
) -> None:
    namespace = new_namespace()
    with cluster.api() as client:
        pool_id = k8s_pool(client, config(namespace, min_replicas=1))
        before = scrape(client)
        assert len(sync(client, pool_id)["created"]) == 1
        after = scrape(client)

    def more(name: str, **labels: str) -> float:
        return total(after, name, **labels) - total(before, name, **labels)

    created = {"verb": "create", "resource": "pods"}
    listed = {"verb": "list", "resource": "pods"}
    assert more("slotpool_kubernetes_requests_total", **created, code="201") >= 1
    assert more("slotpool_kubernetes_requests_total", **listed, code="200") >= 1
    for labels in (created, listed):  # every request counted is timed, with the same labels
        counted = more("slotpool_kubernetes_requests_total", **labels)
        assert more("slotpool_kubernetes_request_seconds_count", **labels) == counted > 0
        assert more("slotpool_kubernetes_request_seconds_sum", **labels) > 0
    codes = {dict(seen)["code"] for n, seen in after if n == "slotpool_kubernetes_requests_total"}
    assert all((code.isdigit() and len(code) == 3) or code == "error" for code in codes), codes
