"""The chart installed (``helm install``) on the real test API server, and its RBAC proved two ways:

* the API server's own authorizer (SubjectAccessReview) is asked whether the chart's
  ServiceAccount may do each thing slotpool's Kubernetes runtime does, and may not do what it
  never needs;
* a real slotpool server process runs outside the cluster with nothing but that ServiceAccount's
  credentials (a token from the TokenRequest API in a kubeconfig) and scales a k8s pool: it creates
  an agent Pod for a task (the agent, started by ``AgentKubelet``, runs the task), deletes it when
  the pool scales down, and deletes the pool's Secret with the pool.
"""

from __future__ import annotations

import shutil
import ssl
import tempfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml

from tests.deploy.api import allowed
from tests.e2e.helpers import submit, until_final, wait_for
from tests.support.helm import CHART, Helm
from tests.support.kube import K8sTestEnv
from tests.support.kubelet import AgentKubelet
from tests.support.ports import free_port
from tests.support.server import server_process, server_settings

RELEASE = "sp"
NAMESPACE = "slotpool-chart"
AGENTS = ["slotpool-chart-a", "slotpool-chart-b"]
ACCOUNT = (NAMESPACE, "sp-slotpool")  # the ServiceAccount the chart names <release>-slotpool
ADMIN = "chart-rbac-admin-token-0123456789abcdef"
POOLS = "/api/v1/agent-pools"


@pytest.fixture(scope="module")
def installed(helm_k8s: Helm, k8s: K8sTestEnv) -> Iterator[K8sTestEnv]:
    """``helm install`` of the chart, agents in two namespaces; uninstalled afterwards."""
    result = helm_k8s.run(
        "install",
        RELEASE,
        CHART,
        "--namespace",
        NAMESPACE,
        "--create-namespace",
        "--set",
        "database.url=postgresql://slotpool:secret@postgres.databases.svc:5432/slotpool",
        "--set",
        f"agents.namespaces={{{','.join(AGENTS)}}}",
    )
    assert result.returncode == 0, result.stdout + result.stderr
    try:
        yield k8s
    finally:
        uninstalled = helm_k8s.run("uninstall", RELEASE, "--namespace", NAMESPACE, "--wait")
        assert uninstalled.returncode == 0, uninstalled.stderr


def test_the_install_made_the_agents_namespaces_restricted(installed: K8sTestEnv) -> None:
    for name in AGENTS:
        labels = installed.client.get(f"/api/v1/namespaces/{name}").json()["metadata"]["labels"]
        assert labels["pod-security.kubernetes.io/enforce"] == "restricted"


# Every request the Kubernetes runtime makes (src/slotpool/runtime/kubernetes.py), in each
# agents' namespace; nothing cluster-wide.
NEEDED = [
    *[
        (verb, resource, namespace)
        for namespace in AGENTS
        for resource, verbs in (
            ("pods", ("create", "get", "list", "watch", "delete")),
            ("secrets", ("create", "get", "update", "delete")),
        )
        for verb in verbs
    ],
]
# (verb, resource, namespace, subresource)
NOT_NEEDED = [
    ("create", "pods", "kube-system", ""),  # only the agents' namespaces
    ("create", "pods", "default", ""),
    ("create", "pods", NAMESPACE, ""),  # not even its own namespace
    ("list", "pods", None, ""),  # not cluster-wide
    ("watch", "pods", None, ""),
    ("patch", "pods", AGENTS[0], ""),
    ("create", "pods", AGENTS[0], "exec"),  # no way into a Pod
    ("get", "pods", AGENTS[0], "exec"),
    ("create", "pods", AGENTS[0], "attach"),
    ("create", "pods", AGENTS[0], "portforward"),
    ("get", "pods", AGENTS[0], "log"),
    ("create", "pods", AGENTS[0], "eviction"),
    ("list", "secrets", AGENTS[0], ""),  # its own Secrets, by name only
    ("watch", "secrets", AGENTS[0], ""),
    ("get", "secrets", "kube-system", ""),  # no Secret of any other namespace
    ("get", "secrets", NAMESPACE, ""),  # not even the database URL's (the kubelet reads that)
    ("list", "secrets", None, ""),
    ("create", "deployments", AGENTS[0], ""),  # bare Pods, never Deployments
    ("create", "configmaps", AGENTS[0], ""),
    ("create", "serviceaccounts", AGENTS[0], ""),
    ("create", "roles", AGENTS[0], ""),
    ("create", "namespaces", None, ""),  # nothing cluster-wide: the chart makes the namespaces
    ("get", "namespaces", None, ""),
    ("list", "namespaces", None, ""),
    ("update", "namespaces", None, ""),
    ("delete", "namespaces", None, ""),
    ("list", "nodes", None, ""),
]
_GROUPS = {"deployments": "apps", "roles": "rbac.authorization.k8s.io"}


@pytest.mark.parametrize(("verb", "resource", "namespace"), NEEDED)
def test_the_service_account_may_do_what_the_runtime_does(
    installed: K8sTestEnv, verb: str, resource: str, namespace: str | None
) -> None:
    assert allowed(installed, ACCOUNT, verb, resource, namespace)


@pytest.mark.parametrize(("verb", "resource", "namespace", "subresource"), NOT_NEEDED)
def test_the_service_account_may_not_do_more(
    installed: K8sTestEnv, verb: str, resource: str, namespace: str | None, subresource: str
) -> None:
    group = _GROUPS.get(resource, "")
    assert not allowed(
        installed, ACCOUNT, verb, resource, namespace, group=group, subresource=subresource
    )


# -- the control plane with the chart's credentials -----------------------------------------------


@pytest.fixture
def work() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="slotpool-chart-rbac-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _token_of(kubeconfig: Path) -> str:
    token: str = yaml.safe_load(kubeconfig.read_text())["users"][0]["user"]["token"]
    return token


def test_the_token_is_the_service_accounts_and_has_only_its_rights(
    installed: K8sTestEnv, work: Path
) -> None:
    kubeconfig = installed.service_account_kubeconfig(*ACCOUNT, work / "kubeconfig")
    headers = {"Authorization": f"Bearer {_token_of(kubeconfig)}"}
    with httpx.Client(
        base_url=installed.server,
        verify=ssl.create_default_context(cafile=str(installed.ca_file)),
        headers=headers,
        timeout=30,
    ) as api:
        review = api.post(
            "/apis/authentication.k8s.io/v1/selfsubjectreviews",
            json={"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"},
        )
        assert review.status_code == 201, review.text
        assert review.json()["status"]["userInfo"]["username"] == (
            f"system:serviceaccount:{ACCOUNT[0]}:{ACCOUNT[1]}"
        )
        assert api.get(f"/api/v1/namespaces/{AGENTS[0]}/pods").status_code == 200
        assert api.get("/api/v1/pods").status_code == 403
        assert api.get("/api/v1/namespaces/kube-system/secrets").status_code == 403


def test_a_server_with_the_charts_credentials_creates_and_deletes_agent_pods(
    installed: K8sTestEnv, work: Path
) -> None:
    namespace = AGENTS[1]  # not the default one: the pool's config names it
    kubeconfig = installed.service_account_kubeconfig(*ACCOUNT, work / "kubeconfig")
    port = free_port()
    settings = server_settings(
        work,
        admin=ADMIN,
        port=port,
        local_runtime=False,
        kubeconfig=kubeconfig,
        default_namespace=AGENTS[0],
        pod_sync_seconds=0.5,
        log_level="info",
    )
    config = {
        "image": "registry.example/slotpool-agent:1",
        "resources": {
            "requests": {"cpu": "100m", "memory": "64Mi"},
            "limits": {"cpu": "500m", "memory": "256Mi"},
        },
        "slots_per_pod": 1,
        "min_replicas": 0,
        "max_replicas": 2,
        "scale_down_delay_seconds": 0,
        "namespace": namespace,
    }

    def live_pods() -> list[str]:
        items = installed.client.get(
            f"/api/v1/namespaces/{namespace}/pods",
            params={"labelSelector": "app.kubernetes.io/managed-by=slotpool"},
        ).json()["items"]
        return [p["metadata"]["name"] for p in items if "deletionTimestamp" not in p["metadata"]]

    def secrets() -> list[str]:
        items = installed.client.get(f"/api/v1/namespaces/{namespace}/secrets").json()["items"]
        return [s["metadata"]["name"] for s in items]

    with (
        server_process(settings, work / "server.log", port=port) as server,
        AgentKubelet(installed.kubeconfig, work / "agents", namespace=namespace) as kubelet,
        server.client() as client,
    ):
        created = client.post(
            POOLS, json={"name": "chart-rbac", "pool_type": "k8s", "k8s_config": config}
        )
        assert created.status_code == 201, created.text
        pool_id = created.json()["pool_id"]
        assert live_pods() == []  # min_replicas 0: nothing until there is work

        # A task scales the pool up: the server creates the Secret and a Pod, the agent runs it.
        task_id = submit(client, pool_id, command="echo ran-with-the-charts-rbac")
        wait_for(
            lambda: len(live_pods()) == 1, what="the pool's Pod", seconds=60, detail=server.tail
        )
        pod = live_pods()[0]
        assert f"slotpool-agent-token-{pool_id}" in secrets()
        done = until_final(client, task_id, seconds=90)
        assert (done["status"], done["pod_name"]) == ("succeeded", pod), server.tail()
        assert client.get(f"/api/v1/tasks/{task_id}/logs").text == "ran-with-the-charts-rbac\n"

        # Idle, the pool scales down to 0: the server deletes the Pod.
        wait_for(
            lambda: live_pods() == [], what="the idle Pod deleted", seconds=60, detail=server.tail
        )

        # Deleting the pool deletes its token Secret.
        assert client.delete(f"{POOLS}/{pool_id}").status_code == 204
        assert f"slotpool-agent-token-{pool_id}" not in secrets()
        assert kubelet.errors == [], kubelet.errors
    log = (work / "server.log").read_text()
    refused = [line for line in log.splitlines() if "forbidden" in line.lower()]
    # The one refusal expected: creating the (existing) namespace, a right the chart does not
    # give; the runtime goes on with the namespace as it is.
    namespace_create = [line for line in refused if "/api/v1/namespaces?" in line]
    assert namespace_create, refused
    assert refused == namespace_create, refused
