"""The one Pod builder's output, sent to a real API server: the server's own validation and the
restricted Pod Security admission accept it, the scheduler places it, and resources as saved
reach the Pod. (The Kubernetes runtime itself comes next; this pins the manifest down first.)"""

from __future__ import annotations

import time
from typing import Any

import pytest

from slotpool.domain.config import PoolType, parse_config
from slotpool.domain.manifest import CONFIG_HASH_ANNOTATION, PodContext, build_pod_manifest
from tests.support.kube import K8sTestEnv

NAMESPACE = "slotpool-agents"
CONTEXT = PodContext(
    pool_id="pool-abcdefgh12345678",
    control_plane_url="http://slotpool.example:8080",
    default_namespace=NAMESPACE,
)


@pytest.fixture(scope="module")
def namespace(k8s: K8sTestEnv) -> str:
    body = {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {
            "name": NAMESPACE,
            "labels": {"pod-security.kubernetes.io/enforce": "restricted"},
        },
    }
    response = k8s.client.post("/api/v1/namespaces", json=body)
    assert response.status_code in (201, 409), response.text
    k8s.wait_for_service_account(NAMESPACE)
    return NAMESPACE


def create(k8s: K8sTestEnv, raw: dict[str, Any]) -> dict[str, Any]:
    manifest = build_pod_manifest(parse_config(raw, pool_type=PoolType.k8s), CONTEXT)
    response = k8s.client.post(f"/api/v1/namespaces/{NAMESPACE}/pods", json=manifest)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


def wait_for(k8s: K8sTestEnv, name: str, check: Any, seconds: float = 30) -> dict[str, Any]:
    deadline = time.monotonic() + seconds
    while True:
        pod: dict[str, Any] = k8s.client.get(f"/api/v1/namespaces/{NAMESPACE}/pods/{name}").json()
        if check(pod) or time.monotonic() > deadline:
            return pod
        time.sleep(0.2)


def test_the_built_pod_is_admitted_under_restricted_and_runs(
    k8s: K8sTestEnv, namespace: str
) -> None:
    raw = {
        "image": "ghcr.io/acme/agent:1.4",
        "image_pull_policy": "Always",
        "resources": {"limits": {"cpu": "500m", "memory": "512Mi"}},
        "env": {"TF_LOG": "INFO"},
    }
    created = create(k8s, raw)
    name = created["metadata"]["name"]
    assert name.startswith(f"slotpool-{CONTEXT.pool_id}-")
    pod = wait_for(k8s, name, lambda p: p["status"].get("phase") == "Running")
    assert pod["status"]["phase"] == "Running"
    (container,) = pod["spec"]["containers"]
    assert container["image"] == "ghcr.io/acme/agent:1.4"
    assert container["imagePullPolicy"] == "Always"
    assert container["resources"]["limits"] == {"cpu": "500m", "memory": "512Mi"}
    assert pod["metadata"]["annotations"][CONFIG_HASH_ANNOTATION]
    token = next(e for e in container["env"] if e["name"] == "SLOTPOOL_AGENT_TOKEN")
    assert token["valueFrom"]["secretKeyRef"]["name"] == f"slotpool-agent-token-{CONTEXT.pool_id}"


def test_a_pod_asking_for_more_cpu_than_any_node_stays_pending_with_the_reason(
    k8s: K8sTestEnv, namespace: str
) -> None:
    created = create(k8s, {"image": "busybox", "resources": {"requests": {"cpu": "64"}}})
    pod = wait_for(
        k8s,
        created["metadata"]["name"],
        lambda p: any(
            c.get("reason") == "Unschedulable" for c in p["status"].get("conditions", [])
        ),
    )
    (condition,) = [c for c in pod["status"]["conditions"] if c["type"] == "PodScheduled"]
    assert pod["status"]["phase"] == "Pending"
    assert condition["reason"] == "Unschedulable"
    assert "Insufficient cpu" in condition["message"]


def test_the_restricted_standard_is_really_enforced(k8s: K8sTestEnv, namespace: str) -> None:
    manifest = build_pod_manifest(
        parse_config({"image": "busybox"}, pool_type=PoolType.k8s), CONTEXT
    )
    manifest["spec"]["containers"][0]["securityContext"]["privileged"] = True
    manifest["spec"]["containers"][0]["securityContext"]["allowPrivilegeEscalation"] = True
    response = k8s.client.post(f"/api/v1/namespaces/{NAMESPACE}/pods", json=manifest)
    assert response.status_code == 403
    assert "restricted" in response.json()["message"]
