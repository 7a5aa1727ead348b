"""The one Pod builder. The Kubernetes runtime creates Pods with it and the preview shows its
output, so the preview is exactly what runs (the seed's preview was written separately and
drifted).

Pure: an ``AgentSpec`` (``agent_spec.py``: the pool's configuration and identity, built once by
the domain) -> the manifest dict. ``build_pod_manifest(config, context)`` is the same for callers
that hold a configuration. Unset optional values are left out. The names of the Pod's identity
(labels, annotation, token Secret) are defined with the spec and offered here too, where the
readers of a Pod look for them.
"""

from __future__ import annotations

from typing import Any

from slotpool.domain.agent_spec import (
    BUILDER_VERSION,
    COMPONENT_LABEL,
    CONFIG_HASH_ANNOTATION,
    MANAGED_BY,
    MANAGED_BY_LABEL,
    POOL_LABEL,
    SLOTS_ANNOTATION,
    TERMINATION_GRACE_SECONDS,
    TOKEN_SECRET_KEY,
    AgentNameRef,
    AgentSpec,
    EnvValue,
    PodContext,
    PodUidRef,
    agent_spec,
    pod_config_hash,
    pool_selector,
    token_secret_name,
)
from slotpool.domain.config import PoolConfig, Toleration

__all__ = [
    "BUILDER_VERSION",
    "COMPONENT_LABEL",
    "CONFIG_HASH_ANNOTATION",
    "CONTAINER_NAME",
    "MANAGED_BY",
    "MANAGED_BY_LABEL",
    "POOL_LABEL",
    "SLOTS_ANNOTATION",
    "TERMINATION_GRACE_SECONDS",
    "TOKEN_SECRET_KEY",
    "PodContext",
    "build_pod_manifest",
    "pod_config_hash",
    "pod_manifest",
    "pool_selector",
    "token_secret_name",
]

CONTAINER_NAME = "agent"


def build_pod_manifest(config: PoolConfig, context: PodContext) -> dict[str, Any]:
    return pod_manifest(agent_spec(config, context))


def pod_manifest(spec: AgentSpec) -> dict[str, Any]:
    """The Pod that runs the agent of ``spec``; a new dict each time (callers may change it)."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "generateName": spec.name_prefix,
            "namespace": spec.namespace,
            "labels": dict(spec.labels),
            "annotations": dict(spec.annotations),
        },
        "spec": _pod_spec(spec),
    }


def _pod_spec(spec: AgentSpec) -> dict[str, Any]:
    part = spec.kubernetes
    pod: dict[str, Any] = {
        "restartPolicy": "Never",
        # The agent drains on SIGTERM: running steps get up to 60 s, then 10 s to stop.
        "terminationGracePeriodSeconds": spec.termination_grace_seconds,
        # The agent talks to slotpool, never to the Kubernetes API.
        "automountServiceAccountToken": False,
        "securityContext": {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
        "containers": [_container(spec)],
    }
    if part.service_account:
        pod["serviceAccountName"] = part.service_account
    if part.node_selector:
        pod["nodeSelector"] = dict(part.node_selector)
    if part.tolerations:
        pod["tolerations"] = [_toleration(t) for t in part.tolerations]
    return pod


def _container(spec: AgentSpec) -> dict[str, Any]:
    container: dict[str, Any] = {
        "name": CONTAINER_NAME,
        "image": spec.image,
        "imagePullPolicy": spec.kubernetes.image_pull_policy.value,
    }
    if spec.command:
        container["command"] = list(spec.command)
    if spec.args:
        container["args"] = list(spec.args)
    container["env"] = [_env_var(name, value) for name, value in spec.environment.items()]
    if spec.resources:
        needs = (("requests", spec.resources.requests), ("limits", spec.resources.limits))
        container["resources"] = {part: dict(values) for part, values in needs if values}
    container["securityContext"] = {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "runAsNonRoot": True,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    return container


def _env_var(name: str, value: EnvValue) -> dict[str, Any]:
    if isinstance(value, str):
        return {"name": name, "value": value}
    if isinstance(value, AgentNameRef):
        return {"name": name, "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}
    if isinstance(value, PodUidRef):
        return {"name": name, "valueFrom": {"fieldRef": {"fieldPath": "metadata.uid"}}}
    return {"name": name, "valueFrom": {"secretKeyRef": {"name": value.secret, "key": value.key}}}


def _toleration(toleration: Toleration) -> dict[str, Any]:
    out: dict[str, Any] = {"operator": toleration.operator.value}
    if toleration.key is not None:
        out["key"] = toleration.key
    if toleration.value:
        out["value"] = toleration.value
    if toleration.effect is not None:
        out["effect"] = toleration.effect.value
    if toleration.toleration_seconds is not None:
        out["tolerationSeconds"] = toleration.toleration_seconds
    return out
