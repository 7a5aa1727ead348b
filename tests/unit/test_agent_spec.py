"""The agent spec as a table of (config, identity) -> spec, the Pod built from it, and the manifest
pinned byte for byte: the preview and the Kubernetes runtime both render a spec with this builder,
so what it writes is what the preview shows and what runs."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from slotpool.domain.agent_spec import (
    AGENT_NAME,
    POD_UID,
    AgentSpec,
    KubernetesPart,
    PodContext,
    ResourceNeeds,
    SecretRef,
    agent_spec,
    pod_config_hash,
)
from slotpool.domain.config import PoolConfig, PoolType, PullPolicy, Toleration, parse_config
from slotpool.domain.manifest import build_pod_manifest, pod_manifest

CONTEXT = PodContext(
    pool_id="pool-abc",
    control_plane_url="http://cp:8080",
    default_namespace="agents",
)
TOKEN = SecretRef("slotpool-agent-token-pool-abc", "token")
FULL = {
    "image": "ghcr.io/acme/agent:1.4",
    "image_pull_policy": "Always",
    "command": ["slotpool", "agent"],
    "args": ["--x", "y"],
    "env": {"ZED": "1", "ALPHA": "two"},
    "resources": {"limits": {"memory": "512Mi", "cpu": "500m"}, "requests": {"cpu": "250m"}},
    "slots_per_pod": 7,
    "namespace": "ci",
    "service_account": "runner",
    "node_selector": {"b": "2", "a": "1"},
    "tolerations": [
        {"key": "ci", "operator": "Exists", "effect": "NoSchedule"},
        {"key": "k", "value": "v", "effect": "NoExecute", "toleration_seconds": 30},
    ],
    "labels": {"team": "infra"},
    "annotations": {"owner": "a@b"},
    "min_replicas": 0,
    "max_replicas": 3,
}
# build_pod_manifest(FULL, CONTEXT) before the agent spec existed, as json.dumps wrote it (key
# order included): the spec changed how the Pod is built, not one byte of it.
FULL_POD_JSON = (
    '{"apiVersion": "v1", "kind": "Pod", "metadata": {"generateName": "slotpool-pool-abc-", '
    '"namespace": "ci", "labels": {"team": "infra", "app.kubernetes.io/managed-by": "slotpool", '
    '"app.kubernetes.io/component": "agent", "slotpool.io/pool-id": "pool-abc"}, '
    '"annotations": {"owner": "a@b", "slotpool.io/config-hash": "HASH", "slotpool.io/slots": '
    '"7"}}, "spec": {"restartPolicy": "Never", "terminationGracePeriodSeconds": 90, '
    '"automountServiceAccountToken": false, "securityContext": {"runAsNonRoot": true, '
    '"seccompProfile": {"type": "RuntimeDefault"}}, "containers": [{"name": "agent", "image": '
    '"ghcr.io/acme/agent:1.4", "imagePullPolicy": "Always", "command": ["slotpool", "agent"], '
    '"args": ["--x", "y"], "env": [{"name": "SLOTPOOL_SERVER_URL", "value": "http://cp:8080"}, '
    '{"name": "SLOTPOOL_POOL_ID", "value": "pool-abc"}, {"name": "SLOTPOOL_AGENT_NAME", '
    '"valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}, {"name": "SLOTPOOL_SLOTS", '
    '"value": "7"}, {"name": "SLOTPOOL_AGENT_TOKEN", "valueFrom": {"secretKeyRef": {"name": '
    '"slotpool-agent-token-pool-abc", "key": "token"}}}, {"name": "SLOTPOOL_POD_UID", '
    '"valueFrom": {"fieldRef": {"fieldPath": "metadata.uid"}}}, {"name": "SLOTPOOL_STEP_ENV", '
    '"value": "ALPHA,ZED"}, {"name": "ALPHA", "value": "two"}, '
    '{"name": "ZED", "value": "1"}], "resources": {"requests": {"cpu": "250m"}, "limits": '
    '{"memory": "512Mi", "cpu": "500m"}}, "securityContext": {"allowPrivilegeEscalation": '
    'false, "capabilities": {"drop": ["ALL"]}, "runAsNonRoot": true, "seccompProfile": '
    '{"type": "RuntimeDefault"}}}], "serviceAccountName": "runner", "nodeSelector": {"b": "2", '
    '"a": "1"}, "tolerations": [{"operator": "Exists", "key": "ci", "effect": "NoSchedule"}, '
    '{"operator": "Equal", "key": "k", "value": "v", "effect": "NoExecute", '
    '"tolerationSeconds": 30}]}}'
)


def spec_of(raw: dict[str, Any], context: PodContext = CONTEXT) -> AgentSpec:
    return agent_spec(parse_config(raw, pool_type=PoolType.k8s), context)


def injected(slots: str) -> dict[str, object]:
    return {
        "SLOTPOOL_SERVER_URL": "http://cp:8080",
        "SLOTPOOL_POOL_ID": "pool-abc",
        "SLOTPOOL_AGENT_NAME": AGENT_NAME,
        "SLOTPOOL_SLOTS": slots,
        "SLOTPOOL_AGENT_TOKEN": TOKEN,
        "SLOTPOOL_POD_UID": POD_UID,
    }


@pytest.mark.parametrize(
    ("raw", "field", "expected"),
    [
        ({"image": "busybox"}, "pool_id", "pool-abc"),
        ({"image": "busybox"}, "namespace", "agents"),
        ({"image": "busybox", "namespace": "ci"}, "namespace", "ci"),
        ({"image": "busybox"}, "name_prefix", "slotpool-pool-abc-"),
        ({"image": "busybox"}, "image", "busybox"),
        ({}, "image", ""),
        ({"image": "busybox"}, "command", ()),
        ({"image": "b", "command": ["run"], "args": ["-v"]}, "command", ("run",)),
        ({"image": "b", "command": ["run"], "args": ["-v"]}, "args", ("-v",)),
        ({"image": "busybox"}, "slots", 4),
        ({"image": "busybox", "slots_per_pod": 2}, "slots", 2),
        ({"image": "busybox"}, "termination_grace_seconds", 90),
        ({"image": "busybox"}, "resources", ResourceNeeds()),
        ({"image": "b", "resources": {}}, "resources", ResourceNeeds()),
        (
            {"image": "b", "resources": {"limits": {"cpu": "1"}}},
            "resources",
            ResourceNeeds(requests={}, limits={"cpu": "1"}),
        ),
        ({"image": "busybox"}, "environment", injected("4")),
        (
            {"image": "b", "slots_per_pod": 2, "env": {"B": "2", "A": "1"}},
            "environment",
            {**injected("2"), "SLOTPOOL_STEP_ENV": "A,B", "A": "1", "B": "2"},
        ),
        (
            {"image": "b", "labels": {"team": "infra"}},
            "labels",
            {
                "team": "infra",
                "app.kubernetes.io/managed-by": "slotpool",
                "app.kubernetes.io/component": "agent",
                "slotpool.io/pool-id": "pool-abc",
            },
        ),
        ({"image": "busybox"}, "kubernetes", KubernetesPart()),
        (
            {
                "image": "b",
                "image_pull_policy": "Never",
                "service_account": "runner",
                "node_selector": {"pool": "ci"},
                "tolerations": [{"operator": "Exists"}],
            },
            "kubernetes",
            KubernetesPart(
                image_pull_policy=PullPolicy.Never,
                service_account="runner",
                node_selector={"pool": "ci"},
                tolerations=(Toleration(operator="Exists"),),
            ),
        ),
    ],
)
def test_the_spec_as_a_table(raw: dict[str, Any], field: str, expected: object) -> None:
    pool_type = PoolType.k8s if "image" in raw else PoolType.local
    spec = agent_spec(parse_config(raw, pool_type=pool_type), CONTEXT)
    assert getattr(spec, field) == expected


def test_the_spec_carries_the_config_hash_on_its_annotations() -> None:
    config = parse_config(FULL, pool_type=PoolType.k8s)
    spec = agent_spec(config, CONTEXT)
    assert spec.config_hash == pod_config_hash(config, CONTEXT)
    assert dict(spec.annotations) == {
        "owner": "a@b",
        "slotpool.io/config-hash": spec.config_hash,
        "slotpool.io/slots": "7",
    }


def test_the_token_is_a_reference_to_the_pools_secret_never_a_value() -> None:
    spec = spec_of(FULL)
    assert spec.token == TOKEN
    assert spec.environment["SLOTPOOL_AGENT_TOKEN"] == spec.token
    values = [v for v in spec.environment.values() if isinstance(v, str)]
    assert not any("token" in v for v in values)


def test_the_environment_keeps_the_pods_order() -> None:
    names = list(spec_of({**FULL, "env": {"B": "2", "A": "1", "C": "3"}}).environment)
    assert names == [*injected("7"), "SLOTPOOL_STEP_ENV", "A", "B", "C"]


def test_the_spec_cannot_be_changed() -> None:
    spec = spec_of(FULL)
    with pytest.raises(AttributeError):
        spec.image = "other"  # type: ignore[misc]
    with pytest.raises(TypeError):
        spec.labels["team"] = "other"  # type: ignore[index]
    with pytest.raises(TypeError):
        spec.environment["SLOTPOOL_SLOTS"] = "9"  # type: ignore[index]


def test_scaling_settings_change_no_spec() -> None:
    assert spec_of(FULL) == spec_of({**FULL, "min_replicas": 2, "max_replicas": 9})


def test_the_pod_is_byte_for_byte_what_the_builder_wrote_before_the_spec() -> None:
    pod = build_pod_manifest(parse_config(FULL, pool_type=PoolType.k8s), CONTEXT)
    digest = pod["metadata"]["annotations"]["slotpool.io/config-hash"]
    assert json.dumps(pod) == FULL_POD_JSON.replace("HASH", digest)


def test_each_pod_built_is_a_new_dict() -> None:
    spec = spec_of(FULL)
    first = pod_manifest(spec)
    first["spec"]["containers"][0]["env"].clear()
    first["metadata"]["labels"].clear()
    assert pod_manifest(spec) == build_pod_manifest(
        parse_config(FULL, pool_type=PoolType.k8s), CONTEXT
    )


images = st.from_regex(r"\A[a-z][a-z0-9]{0,8}(/[a-z][a-z0-9]{0,8})?(:[a-z0-9]{1,6})?\Z")
env = st.dictionaries(
    st.from_regex(r"\A[A-Z][A-Z0-9_]{0,8}\Z"),
    st.text(st.characters(blacklist_characters="\x00", blacklist_categories=["Cs"]), max_size=8),
    max_size=4,
)


@given(image=images, env=env, slots=st.integers(1, 64), generation=st.integers(0, 3))
def test_the_pod_of_a_spec_says_what_the_spec_says(
    image: str, env: dict[str, str], slots: int, generation: int
) -> None:
    context = PodContext("pool-abc", "http://cp:8080", "agents", token_generation=generation)
    config = PoolConfig.model_validate({"image": image, "env": env, "slots_per_pod": slots})
    spec = agent_spec(config, context)
    pod = pod_manifest(spec)
    (container,) = pod["spec"]["containers"]
    assert pod == build_pod_manifest(config, context)
    assert [e["name"] for e in container["env"]] == list(spec.environment)
    assert pod["metadata"]["annotations"]["slotpool.io/config-hash"] == spec.config_hash
    assert (container["image"], pod["metadata"]["generateName"]) == (image, spec.name_prefix)
