"""The one Pod builder, as a table of (config, identity) -> manifest, and its hash as properties."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from slotpool.domain.config import PoolConfig, PoolType, parse_config
from slotpool.domain.manifest import (
    CONFIG_HASH_ANNOTATION,
    POOL_LABEL,
    PodContext,
    build_pod_manifest,
    pod_config_hash,
)

CONTEXT = PodContext(
    pool_id="pool-abcdefgh12345678",
    control_plane_url="https://slotpool.example.com",
    default_namespace="agents",
)
BASE = {
    "image": "ghcr.io/acme/agent:1.4",
    "image_pull_policy": "Always",
    "resources": {"limits": {"cpu": "500m", "memory": "512Mi"}, "requests": {"cpu": "250m"}},
    "slots_per_pod": 3,
}


def manifest(raw: dict[str, Any], context: PodContext = CONTEXT) -> dict[str, Any]:
    return build_pod_manifest(parse_config(raw, pool_type=PoolType.k8s), context)


def env_of(pod: dict[str, Any]) -> dict[str, Any]:
    return {
        e["name"]: e.get("value", e.get("valueFrom")) for e in pod["spec"]["containers"][0]["env"]
    }


def test_manifest_is_a_bare_pod_as_saved() -> None:
    pod = manifest(BASE)
    assert pod["apiVersion"] == "v1"
    assert pod["kind"] == "Pod"
    assert pod["spec"]["restartPolicy"] == "Never"
    meta = pod["metadata"]
    assert meta["generateName"] == "slotpool-pool-abcdefgh12345678-"
    assert "name" not in meta
    assert meta["namespace"] == "agents"
    assert meta["labels"][POOL_LABEL] == CONTEXT.pool_id
    assert meta["labels"]["app.kubernetes.io/managed-by"] == "slotpool"
    assert meta["annotations"][CONFIG_HASH_ANNOTATION] == pod_config_hash(
        parse_config(BASE, pool_type=PoolType.k8s), CONTEXT
    )
    (container,) = pod["spec"]["containers"]
    assert container["name"] == "agent"
    assert container["image"] == "ghcr.io/acme/agent:1.4"
    assert container["imagePullPolicy"] == "Always"
    assert container["resources"] == {
        "requests": {"cpu": "250m"},
        "limits": {"cpu": "500m", "memory": "512Mi"},
    }


def test_token_is_only_a_secret_reference() -> None:
    env = env_of(manifest(BASE))
    assert env["SLOTPOOL_AGENT_TOKEN"] == {
        "secretKeyRef": {"name": "slotpool-agent-token-pool-abcdefgh12345678", "key": "token"}
    }
    assert env["SLOTPOOL_AGENT_NAME"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    assert env["SLOTPOOL_POD_UID"] == {"fieldRef": {"fieldPath": "metadata.uid"}}
    assert env["SLOTPOOL_POOL_ID"] == CONTEXT.pool_id
    assert env["SLOTPOOL_SERVER_URL"] == CONTEXT.control_plane_url
    assert env["SLOTPOOL_SLOTS"] == "3"


def test_security_context_meets_the_restricted_standard() -> None:
    pod = manifest(BASE)
    assert pod["spec"]["securityContext"]["runAsNonRoot"] is True
    container = pod["spec"]["containers"][0]["securityContext"]
    assert container["allowPrivilegeEscalation"] is False
    assert container["capabilities"] == {"drop": ["ALL"]}
    assert container["seccompProfile"] == {"type": "RuntimeDefault"}


@pytest.mark.parametrize(
    ("extra", "check"),
    [
        ({}, lambda p: "serviceAccountName" not in p["spec"] and "nodeSelector" not in p["spec"]),
        ({}, lambda p: "command" not in p["spec"]["containers"][0]),
        ({"namespace": "ci"}, lambda p: p["metadata"]["namespace"] == "ci"),
        ({"service_account": "runner"}, lambda p: p["spec"]["serviceAccountName"] == "runner"),
        ({"node_selector": {"pool": "ci"}}, lambda p: p["spec"]["nodeSelector"] == {"pool": "ci"}),
        (
            {"tolerations": [{"key": "ci", "operator": "Exists", "effect": "NoSchedule"}]},
            lambda p: (
                p["spec"]["tolerations"]
                == [{"operator": "Exists", "key": "ci", "effect": "NoSchedule"}]
            ),
        ),
        (
            {"command": ["slotpool", "agent"]},
            lambda p: p["spec"]["containers"][0]["command"] == ["slotpool", "agent"],
        ),
        ({"labels": {"team": "infra"}}, lambda p: p["metadata"]["labels"]["team"] == "infra"),
        (
            {"annotations": {"owner": "a@b"}},
            lambda p: p["metadata"]["annotations"]["owner"] == "a@b",
        ),
        ({"env": {"B": "2", "A": "1"}}, lambda p: list(env_of(p))[-2:] == ["A", "B"]),
    ],
)
def test_optional_fields(extra: dict[str, Any], check: Any) -> None:
    pod = manifest({**BASE, **extra})
    assert check(pod), pod


def test_no_nulls_anywhere() -> None:
    def walk(value: Any) -> None:
        assert value is not None
        if isinstance(value, dict):
            for item in value.values():
                walk(item)
        elif isinstance(value, list):
            for item in value:
                walk(item)

    walk(manifest(BASE))


def test_same_config_same_manifest_and_hash() -> None:
    assert manifest(BASE) == manifest(dict(reversed(list(BASE.items()))))


def test_env_order_does_not_change_the_manifest() -> None:
    assert manifest({**BASE, "env": {"A": "1", "B": "2"}}) == manifest(
        {**BASE, "env": {"B": "2", "A": "1"}}
    )


POD_CHANGES: list[dict[str, Any]] = [
    {"image": "ghcr.io/acme/agent:1.5"},
    {"image_pull_policy": "IfNotPresent"},
    {"command": ["run"]},
    {"args": ["--x"]},
    {"env": {"A": "1"}},
    {"resources": {"limits": {"cpu": "1"}}},
    {"slots_per_pod": 4},
    {"namespace": "other"},
    {"service_account": "sa"},
    {"node_selector": {"a": "b"}},
    {"tolerations": [{"operator": "Exists"}]},
    {"labels": {"a": "b"}},
    {"annotations": {"a": "b"}},
]


@pytest.mark.parametrize("change", POD_CHANGES)
def test_any_change_of_the_pod_configuration_changes_manifest_and_hash(
    change: dict[str, Any],
) -> None:
    before, after = manifest(BASE), manifest({**BASE, **change})
    assert before != after
    assert (
        before["metadata"]["annotations"][CONFIG_HASH_ANNOTATION]
        != after["metadata"]["annotations"][CONFIG_HASH_ANNOTATION]
    )


@pytest.mark.parametrize(
    "change",
    [
        {"min_replicas": 0},
        {"max_replicas": 7},
        {"scale_down_delay_seconds": 5},
        {"min_idle_slots": 2},
    ],
)
def test_scaling_settings_do_not_shape_the_pod(change: dict[str, Any]) -> None:
    assert manifest(BASE) == manifest({**BASE, **change})


def test_the_context_shapes_the_pod() -> None:
    moved = PodContext(CONTEXT.pool_id, "https://new.example.com", CONTEXT.default_namespace)
    assert manifest(BASE) != manifest(BASE, moved)


images = st.from_regex(r"\A[a-z][a-z0-9]{0,8}(/[a-z][a-z0-9]{0,8})?(:[a-z0-9]{1,6})?\Z")
env = st.dictionaries(
    st.from_regex(r"\A[A-Z][A-Z0-9_]{0,8}\Z"),
    st.text(st.characters(blacklist_characters="\x00", blacklist_categories=["Cs"]), max_size=8),
    max_size=4,
)
cpu = st.integers(min_value=1, max_value=64000).map(lambda n: f"{n}m")


@given(image=images, env=env, cpu=cpu, slots=st.integers(1, 64))
def test_hash_is_a_function_of_the_manifest(
    image: str, env: dict[str, str], cpu: str, slots: int
) -> None:
    raw = {
        "image": image,
        "env": env,
        "resources": {"limits": {"cpu": cpu}},
        "slots_per_pod": slots,
    }
    config = parse_config(raw, pool_type=PoolType.k8s)
    again = PoolConfig.model_validate(raw)
    assert pod_config_hash(config, CONTEXT) == pod_config_hash(again, CONTEXT)
    assert build_pod_manifest(config, CONTEXT) == build_pod_manifest(again, CONTEXT)


@given(a=images, b=images)
def test_different_images_different_hashes(a: str, b: str) -> None:
    ha = pod_config_hash(PoolConfig(image=a), CONTEXT)
    hb = pod_config_hash(PoolConfig(image=b), CONTEXT)
    assert (ha == hb) == (a == b)
