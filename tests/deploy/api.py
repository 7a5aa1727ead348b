"""Objects sent to the test API server as they are (a real create, or a server-side dry run with
strict field validation), and questions to its authorizer."""

from __future__ import annotations

import functools
from typing import Any

from tests.support.kube import K8sTestEnv


@functools.cache
def _plurals(k8s: K8sTestEnv, api_version: str) -> dict[str, tuple[str, bool]]:
    """kind: (resource, namespaced) of one group version, from the API server's discovery."""
    base = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
    response = k8s.client.get(base)
    assert response.status_code == 200, f"{api_version}: {response.text}"
    return {
        r["kind"]: (r["name"], r["namespaced"])
        for r in response.json()["resources"]
        if "/" not in r["name"]  # not a subresource
    }


def collection(k8s: K8sTestEnv, doc: dict[str, Any]) -> str:
    """The path objects like ``doc`` are created at."""
    api_version = doc["apiVersion"]
    resource, namespaced = _plurals(k8s, api_version)[doc["kind"]]
    base = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
    if namespaced:
        return f"{base}/namespaces/{doc['metadata']['namespace']}/{resource}"
    return f"{base}/{resource}"


def create(k8s: K8sTestEnv, doc: dict[str, Any], *, dry_run: bool = False) -> None:
    """Create ``doc`` (one left by an earlier run is fine), or with ``dry_run`` have the API
    server validate and admit it without storing it; an unknown field is an error either way."""
    params = {"fieldValidation": "Strict", **({"dryRun": "All"} if dry_run else {})}
    response = k8s.client.post(collection(k8s, doc), json=doc, params=params)
    accepted = (200, 201) if dry_run else (200, 201, 409)
    name = f"{doc['kind']} {doc['metadata'].get('namespace', '')}/{doc['metadata']['name']}"
    assert response.status_code in accepted, f"{name}: {response.text}"


def allowed(
    k8s: K8sTestEnv,
    account: tuple[str, str],
    verb: str,
    resource: str,
    namespace: str | None,
    *,
    group: str = "",
    subresource: str = "",
) -> bool:
    """The API server's authorizer (SubjectAccessReview): may the ServiceAccount
    ``account`` (namespace, name) do ``verb`` on ``resource``, in ``namespace`` (None: in all
    namespaces, or a cluster-scoped resource)?"""
    account_namespace, name = account
    attributes = {"verb": verb, "resource": resource, "group": group, "subresource": subresource}
    if namespace is not None:
        attributes["namespace"] = namespace
    review = {
        "apiVersion": "authorization.k8s.io/v1",
        "kind": "SubjectAccessReview",
        "spec": {
            "user": f"system:serviceaccount:{account_namespace}:{name}",
            "groups": ["system:serviceaccounts", f"system:serviceaccounts:{account_namespace}"],
            "resourceAttributes": attributes,
        },
    }
    path = "/apis/authorization.k8s.io/v1/subjectaccessreviews"
    response = k8s.client.post(path, json=review)
    assert response.status_code == 201, response.text
    answer: bool = response.json()["status"].get("allowed", False)
    return answer
