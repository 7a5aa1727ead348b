"""The one Pod builder. The controller creates Pods with it and the preview shows its output, so
the preview is exactly what runs (the seed's preview was written separately and drifted).

Pure: (config, pool identity, settings) -> manifest dict. Unset optional values are left out.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from slotpool.domain.config import PoolConfig, Toleration, config_hash

MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
MANAGED_BY = "slotpool"
COMPONENT_LABEL = "app.kubernetes.io/component"
POOL_LABEL = "slotpool.io/pool-id"
CONFIG_HASH_ANNOTATION = "slotpool.io/config-hash"
SLOTS_ANNOTATION = "slotpool.io/slots"
TOKEN_SECRET_KEY = "token"
CONTAINER_NAME = "agent"
# Bumped when the builder's output changes for the same config, so existing Pods count as outdated.
BUILDER_VERSION = "1"
TERMINATION_GRACE_SECONDS = 90


def token_secret_name(pool_id: str) -> str:
    return f"slotpool-agent-token-{pool_id}"


def pool_selector(pool_id: str) -> str:
    return f"{MANAGED_BY_LABEL}={MANAGED_BY},{POOL_LABEL}={pool_id}"


@dataclass(frozen=True)
class PodContext:
    """Who the Pod is for and where its agent reports; from the pool and the settings."""

    pool_id: str
    control_plane_url: str
    default_namespace: str
    token_generation: int = 0  # bumped by a token rotation, so every Pod becomes outdated

    def namespace_for(self, config: PoolConfig) -> str:
        return config.namespace or self.default_namespace

    def hash_inputs(self, config: PoolConfig) -> dict[str, str]:
        inputs = {
            "builder": BUILDER_VERSION,
            "pool_id": self.pool_id,
            "control_plane_url": self.control_plane_url,
            "namespace": self.namespace_for(config),
        }
        if self.token_generation:  # (absent before the first rotation: hashes stay as they were)
            inputs["token_generation"] = str(self.token_generation)
        return inputs


def pod_config_hash(config: PoolConfig, context: PodContext) -> str:
    return config_hash(config, context=context.hash_inputs(config))


def build_pod_manifest(config: PoolConfig, context: PodContext) -> dict[str, Any]:
    digest = pod_config_hash(config, context)
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "generateName": f"slotpool-{context.pool_id}-",
            "namespace": context.namespace_for(config),
            "labels": {
                **config.labels,
                MANAGED_BY_LABEL: MANAGED_BY,
                COMPONENT_LABEL: "agent",
                POOL_LABEL: context.pool_id,
            },
            "annotations": {
                **config.annotations,
                CONFIG_HASH_ANNOTATION: digest,
                SLOTS_ANNOTATION: str(config.slots_per_pod),
            },
        },
        "spec": _pod_spec(config, context),
    }


def _pod_spec(config: PoolConfig, context: PodContext) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "restartPolicy": "Never",
        # The agent drains on SIGTERM: running steps get up to 60 s, then 10 s to stop.
        "terminationGracePeriodSeconds": TERMINATION_GRACE_SECONDS,
        # The agent talks to slotpool, never to the Kubernetes API.
        "automountServiceAccountToken": False,
        "securityContext": {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
        "containers": [_container(config, context)],
    }
    if config.service_account:
        spec["serviceAccountName"] = config.service_account
    if config.node_selector:
        spec["nodeSelector"] = dict(config.node_selector)
    if config.tolerations:
        spec["tolerations"] = [_toleration(t) for t in config.tolerations]
    return spec


def _container(config: PoolConfig, context: PodContext) -> dict[str, Any]:
    container: dict[str, Any] = {
        "name": CONTAINER_NAME,
        "image": config.image or "",
        "imagePullPolicy": config.image_pull_policy.value,
    }
    if config.command:
        container["command"] = list(config.command)
    if config.args:
        container["args"] = list(config.args)
    container["env"] = _injected_env(config, context) + [
        # Sorted: a database may not keep a JSON object's key order, and the hash must not move.
        {"name": name, "value": config.env[name]}
        for name in sorted(config.env)
    ]
    if config.resources and (config.resources.requests or config.resources.limits):
        container["resources"] = {
            part: dict(values)
            for part, values in (
                ("requests", config.resources.requests),
                ("limits", config.resources.limits),
            )
            if values
        }
    container["securityContext"] = {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "runAsNonRoot": True,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    return container


def _injected_env(config: PoolConfig, context: PodContext) -> list[dict[str, Any]]:
    return [
        {"name": "SLOTPOOL_SERVER_URL", "value": context.control_plane_url},
        {"name": "SLOTPOOL_POOL_ID", "value": context.pool_id},
        {
            "name": "SLOTPOOL_AGENT_NAME",
            "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}},
        },
        {"name": "SLOTPOOL_SLOTS", "value": str(config.slots_per_pod)},
        {
            "name": "SLOTPOOL_AGENT_TOKEN",
            "valueFrom": {
                "secretKeyRef": {
                    "name": token_secret_name(context.pool_id),
                    "key": TOKEN_SECRET_KEY,
                }
            },
        },
    ]


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
