"""deploy/: the manifests that run slotpool in a cluster, checked by a real API server.

The namespaces and RBAC are created for real and the API server's own authorizer is asked
(SubjectAccessReview) whether slotpool's service account may do each thing the Kubernetes
runtime does, and may not do what it never needs; the Deployment and Service are sent as a
server-side dry run, so the API server validates them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.kube import K8sTestEnv

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
ACCOUNT = "system:serviceaccount:slotpool:slotpool"
AGENTS = "slotpool-agents"

# Every request the Kubernetes runtime makes (runtime/kubernetes.py).
NEEDED = [
    ("create", "pods", AGENTS),
    ("get", "pods", AGENTS),
    ("list", "pods", AGENTS),
    ("watch", "pods", AGENTS),
    ("delete", "pods", AGENTS),
    ("create", "secrets", AGENTS),
    ("get", "secrets", AGENTS),
    ("update", "secrets", AGENTS),
    ("delete", "secrets", AGENTS),
    ("create", "namespaces", None),
    ("get", "namespaces", None),
]
NOT_NEEDED = [
    ("create", "deployments", AGENTS),  # slotpool makes bare Pods, never Deployments
    ("create", "pods", "kube-system"),
    ("list", "secrets", AGENTS),  # only its own Secrets, by name
    ("get", "secrets", "kube-system"),
    ("delete", "namespaces", None),
]


def _path(doc: dict[str, Any]) -> str:
    group, _, version = doc["apiVersion"].rpartition("/")
    base = f"/apis/{group}/{version}" if group else f"/api/{version}"
    plural = doc["kind"].lower() + ("es" if doc["kind"].endswith("s") else "s")
    namespace = doc["metadata"].get("namespace")
    return f"{base}/namespaces/{namespace}/{plural}" if namespace else f"{base}/{plural}"


def _create(k8s: K8sTestEnv, doc: dict[str, Any], *, dry_run: bool = False) -> None:
    params = {"dryRun": "All"} if dry_run else {}
    response = k8s.client.post(_path(doc), json=doc, params=params)
    accepted = (200, 201) if dry_run else (200, 201, 409)  # 409: made by an earlier run
    assert response.status_code in accepted, response.text


def _allowed(k8s: K8sTestEnv, verb: str, resource: str, namespace: str | None) -> bool:
    group = "apps" if resource == "deployments" else ""
    attributes = {"verb": verb, "resource": resource, "group": group}
    if namespace is not None:
        attributes["namespace"] = namespace
    review = {
        "apiVersion": "authorization.k8s.io/v1",
        "kind": "SubjectAccessReview",
        "spec": {
            "user": ACCOUNT,
            "groups": ["system:serviceaccounts", "system:serviceaccounts:slotpool"],
            "resourceAttributes": attributes,
        },
    }
    path = "/apis/authorization.k8s.io/v1/subjectaccessreviews"
    response = k8s.client.post(path, json=review)
    assert response.status_code == 201, response.text
    allowed: bool = response.json()["status"].get("allowed", False)
    return allowed


@pytest.fixture(scope="module")
def applied(k8s: K8sTestEnv) -> K8sTestEnv:
    for name in ("namespaces.yaml", "rbac.yaml"):
        for doc in yaml.safe_load_all((DEPLOY / name).read_text()):
            _create(k8s, doc)
    return k8s


@pytest.mark.parametrize(("verb", "resource", "namespace"), NEEDED)
def test_the_service_account_may_do_what_the_runtime_does(
    applied: K8sTestEnv, verb: str, resource: str, namespace: str | None
) -> None:
    assert _allowed(applied, verb, resource, namespace)


@pytest.mark.parametrize(("verb", "resource", "namespace"), NOT_NEEDED)
def test_the_service_account_may_not_do_more(
    applied: K8sTestEnv, verb: str, resource: str, namespace: str | None
) -> None:
    assert not _allowed(applied, verb, resource, namespace)


def test_the_agents_namespace_enforces_restricted(applied: K8sTestEnv) -> None:
    labels = applied.client.get(f"/api/v1/namespaces/{AGENTS}").json()["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "restricted"


def test_the_control_planes_deployment_and_service_are_valid(applied: K8sTestEnv) -> None:
    docs = list(yaml.safe_load_all((DEPLOY / "slotpool.yaml").read_text()))
    assert [d["kind"] for d in docs] == ["Deployment", "Service"]
    for doc in docs:
        _create(applied, doc, dry_run=True)
    env = {e["name"]: e for e in docs[0]["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["SLOTPOOL_KUBERNETES_IN_CLUSTER"]["value"] == "true"
    assert env["SLOTPOOL_PUBLIC_URL"]["value"] == "http://slotpool.slotpool.svc:8080"
