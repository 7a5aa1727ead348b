"""A pool's configuration as stored and read back: rebuilt without validation (``trusted``) into
the same model validation makes, and its config hash from the stored Pod fields (``pod_fields``)
equal to the hash of the whole configuration, as it was computed before the fields were stored."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import BaseModel

from slotpool.domain.agent_spec import PodContext, pod_config_hash
from slotpool.domain.config import (
    POD_FIELDS,
    PoolConfig,
    PoolType,
    Resources,
    Toleration,
    config_hash,
    pod_fields,
    stored_form,
)
from slotpool.domain.freeze import FreezePolicy, FreezeSchedule
from slotpool.domain.pools import Pool, StoredConfig, stored_pod_fields
from slotpool.domain.trusted import dumped, trusted

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)

text = st.text(st.characters(blacklist_characters="\x00", blacklist_categories=["Cs"]), max_size=8)
label_keys = st.from_regex(r"\A([a-z][a-z0-9]{0,5}\.[a-z]{2,4}/)?[a-z][a-z0-9]{0,6}\Z")
label_values = st.from_regex(r"\A([a-z0-9]([a-z0-9._-]{0,6}[a-z0-9])?)?\Z")
quantities = st.one_of(
    st.integers(1, 64000).map(lambda n: f"{n}m"),
    st.integers(1, 64).map(lambda n: f"{n}Gi"),
    st.integers(1, 8),  # a number, stored as the string it spells
)
resource_names = st.sampled_from(["cpu", "memory", "ephemeral-storage", "nvidia.com/gpu"])
tolerations = st.fixed_dictionaries(
    {},
    optional={
        "key": label_keys,
        "operator": st.sampled_from(["Equal", "Exists"]),
        "value": label_values,
        "effect": st.sampled_from(["NoSchedule", "PreferNoSchedule", "NoExecute"]),
        "toleration_seconds": st.integers(0, 3600),
    },
)
windows = st.fixed_dictionaries(
    {
        "from_time": st.sampled_from(["00:00", "09:30", "23:00"]),
        "to_time": st.sampled_from(["02:00", "17:45"]),
        "weekdays": st.lists(st.integers(1, 7), min_size=1, max_size=7, unique=True),
    },
    optional={
        "id": st.from_regex(r"\Afs-[a-z0-9]{12}\Z"),
        "timezone": st.sampled_from(["UTC", "Europe/Berlin", "America/New_York"]),
        "policy": st.sampled_from(["scale_to_zero", "no_new_tasks"]),
        "note": text,
    },
)
# Every field of the configuration, each present or not: what a client may save.
payloads = st.fixed_dictionaries(
    {},
    optional={
        "image": st.from_regex(r"\A[a-z][a-z0-9]{0,8}(/[a-z][a-z0-9]{0,8})?(:[a-z0-9]{1,6})?\Z"),
        "image_pull_policy": st.sampled_from(["Always", "IfNotPresent", "Never"]),
        "command": st.lists(text, max_size=3),
        "args": st.lists(text, max_size=3),
        "env": st.dictionaries(st.from_regex(r"\A[A-Z][A-Z0-9_]{0,8}\Z"), text, max_size=4),
        "resources": st.fixed_dictionaries(
            {},
            optional={
                "requests": st.dictionaries(resource_names, quantities, max_size=2),
                "limits": st.dictionaries(resource_names, quantities, max_size=2),
            },
        ),
        "min_replicas": st.integers(0, 1000),
        "max_replicas": st.integers(1, 1000),
        "freeze_schedules": st.lists(windows, max_size=2),
        "slots_per_pod": st.integers(1, 64),
        "namespace": st.from_regex(r"\A[a-z]([a-z0-9-]{0,8}[a-z0-9])?\Z"),
        # DNS labels joined by '.': no empty label ("a..0" is refused, rightly)
        "service_account": st.from_regex(
            r"\A[a-z]([a-z0-9-]{0,6}[a-z0-9])?(\.[a-z]([a-z0-9-]{0,6}[a-z0-9])?)?\Z"
        ),
        "node_selector": st.dictionaries(label_keys, label_values, max_size=3),
        "tolerations": st.lists(tolerations, max_size=3),
        "labels": st.dictionaries(label_keys, label_values, max_size=3),
        "annotations": st.dictionaries(label_keys, text, max_size=3),
        "scale_down_delay_seconds": st.integers(0, 86_400),
        "min_idle_slots": st.integers(0, 64_000),
        "pending_timeout_seconds": st.integers(10, 86_400),
        "reservation_ttl_seconds": st.integers(60, 30 * 86_400),
    },
)
contexts = st.builds(
    PodContext,
    pool_id=st.from_regex(r"\Apool-[a-z0-9]{16}\Z"),
    control_plane_url=st.sampled_from(["http://127.0.0.1:8080", "https://slotpool.example/ä"]),
    default_namespace=st.sampled_from(["slotpool-agents", "ci"]),
    token_generation=st.integers(0, 3),
)


def assert_same(built: Any, validated: Any) -> None:
    """The same values, of the same types, with the same fields set, all the way down."""
    assert type(built) is type(validated)
    if isinstance(validated, BaseModel):
        assert built.model_fields_set == validated.model_fields_set
        assert built == validated
        for name in type(validated).model_fields:
            assert_same(getattr(built, name), getattr(validated, name))
    elif isinstance(validated, list):
        assert len(built) == len(validated)
        for one, other in zip(built, validated, strict=True):
            assert_same(one, other)
    else:
        assert built == validated


@given(payloads)
def test_a_stored_config_is_rebuilt_as_validation_makes_it(raw: dict[str, Any]) -> None:
    config = PoolConfig.model_validate(raw)
    stored = json.loads(json.dumps(stored_form(config)))  # as the database hands it back
    rebuilt = trusted(PoolConfig, stored)
    assert_same(rebuilt, PoolConfig.model_validate(stored))
    # The API shows the stored form: the same keys, in the same order, as before.
    assert json.dumps(stored_form(rebuilt)) == json.dumps(stored_form(config))
    assert pod_fields(rebuilt) == pod_fields(config)


@given(payloads)
def test_windows_inside_a_config_are_rebuilt_as_models(raw: dict[str, Any]) -> None:
    validated = PoolConfig.model_validate(raw)
    data = validated.model_dump(mode="json", exclude_unset=True)
    assert_same(trusted(PoolConfig, data), PoolConfig.model_validate(data))


def jsonb_order(value: Any) -> Any:
    """``value`` with every mapping's keys in PostgreSQL's JSONB order (shorter keys first)."""
    if isinstance(value, dict):
        keys = sorted(value, key=lambda key: (len(key.encode()), key.encode()))
        return {key: jsonb_order(value[key]) for key in keys}
    if isinstance(value, list):
        return [jsonb_order(item) for item in value]
    return value


@given(payloads)
def test_a_stored_config_is_shown_as_its_rebuilt_model_dumps_it(raw: dict[str, Any]) -> None:
    """``dumped`` (the pool list's view of a stored configuration) is the stored form of the
    configuration rebuilt, byte for byte, whatever order the database keeps its keys in."""
    stored = json.loads(json.dumps(stored_form(PoolConfig.model_validate(raw))))
    for kept in (stored, jsonb_order(stored)):
        shown = dumped(PoolConfig, kept)
        assert json.dumps(shown) == json.dumps(stored_form(trusted(PoolConfig, kept)))
    window = raw.get("freeze_schedules") or [
        {"from_time": "01:00", "to_time": "02:00", "weekdays": [1]}
    ]
    schedule = FreezeSchedule.model_validate(window[0]).model_dump(mode="json")
    assert dumped(FreezeSchedule, schedule) == trusted(FreezeSchedule, schedule).model_dump(
        mode="json", exclude_none=True
    )


def test_dumped_refuses_what_is_not_a_field() -> None:
    with pytest.raises(ValueError, match="cpu_limit"):
        dumped(PoolConfig, {"image": "x", "cpu_limit": "1"})


def test_nested_models_and_enums_become_what_validation_makes() -> None:
    raw = {
        "image_pull_policy": "Never",
        "resources": {"limits": {"cpu": "1"}},
        "tolerations": [{"operator": "Exists", "effect": "NoExecute"}],
    }
    rebuilt = trusted(PoolConfig, raw)
    assert isinstance(rebuilt.resources, Resources)
    assert rebuilt.resources.requests == {}
    assert isinstance(rebuilt.tolerations[0], Toleration)
    assert rebuilt.tolerations[0].effect is not None
    assert rebuilt.tolerations[0].effect.value == "NoExecute"
    assert rebuilt.image_pull_policy.value == "Never"
    window = trusted(FreezeSchedule, {"from_time": "01:00", "to_time": "02:00", "weekdays": [1]})
    assert window.policy is FreezePolicy.scale_to_zero


def test_defaults_made_anew_are_not_shared() -> None:
    one, other = trusted(PoolConfig, {}), trusted(PoolConfig, {})
    assert one.env is not other.env
    assert one.tolerations is not other.tolerations


def test_data_that_is_not_what_was_stored_is_refused() -> None:
    with pytest.raises(ValueError, match="cpu_limit"):
        trusted(PoolConfig, {"cpu_limit": "1"})
    with pytest.raises(ValueError, match="to_time"):
        trusted(FreezeSchedule, {"from_time": "01:00", "weekdays": []})


class _Inner(BaseModel):
    n: int = 0


class _Hidden(BaseModel):
    by_name: dict[str, _Inner] = {}


def test_a_field_whose_models_it_cannot_rebuild_is_refused() -> None:
    with pytest.raises(TypeError, match="by_name"):
        trusted(_Hidden, {})


def reference_hash(config: PoolConfig, context: dict[str, str]) -> str:
    """The config hash as it was computed before its Pod fields were stored."""
    part = config.model_dump(mode="json", include=set(POD_FIELDS))
    payload = json.dumps(
        {"config": part, "context": context},
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    )
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


@given(payloads, contexts)
def test_the_hash_from_stored_fields_is_the_hash_pods_carry(
    raw: dict[str, Any], context: PodContext
) -> None:
    config = PoolConfig.model_validate(raw)
    inputs = context.hash_inputs(config)
    # Unchanged by storing the Pod fields: Pods built before keep counting as current.
    assert config_hash(config, context=inputs) == reference_hash(config, inputs)
    for pool_type in PoolType:
        pool = pool_of(pool_type, config)
        effective = pool.effective_config()
        expected = None if effective is None else pod_config_hash(effective, context)
        assert pool.config_hash(context) == expected


@given(contexts)
def test_a_local_pool_without_config_hashes_the_defaults(context: PodContext) -> None:
    pool = pool_of(PoolType.local, None)
    assert pool.config_hash(context) == pod_config_hash(PoolConfig(), context)
    assert pool_of(PoolType.k8s, None).config_hash(context) is None


def pool_of(pool_type: PoolType, config: PoolConfig | None) -> Pool:
    """A pool as the store reads it: its configuration rebuilt, its Pod fields as stored."""
    stored = StoredConfig.of(pool_type, config)
    return Pool(
        pool_id="pool-0123456789abcdef",
        name="p",
        description="",
        pool_type=pool_type,
        config=None if stored.document is None else trusted(PoolConfig, stored.document),
        pod_fields=stored.pod_fields,
        freeze_schedules=(),
        unfreeze=None,
        revision=1,
        created_by="t",
        created_at=NOW,
        updated_by="t",
        updated_at=NOW,
    )


def test_a_static_pool_keeps_no_pod_fields() -> None:
    assert stored_pod_fields(PoolType.static, PoolConfig(image="busybox")) is None


# Stored Pod fields are what the code computed when the configuration was saved. When a default
# of a Pod field, or the list of Pod fields, changes, the stored ones no longer match what this
# code computes: add a migration that fills them again (call ``backfill`` of migration 0014),
# then update these lines.
DEFAULT_POD_FIELDS = (
    '{"annotations":{},"args":null,"command":null,"env":{},"image":null,'
    '"image_pull_policy":"IfNotPresent","labels":{},"namespace":null,"node_selector":{},'
    '"resources":{"limits":{},"requests":{}},"service_account":null,"slots_per_pod":4,'
    '"tolerations":[{"effect":null,"key":null,"operator":"Equal","toleration_seconds":null,'
    '"value":null}]}'
)


def test_the_defaults_of_the_pod_fields_are_pinned() -> None:
    with_nested = PoolConfig.model_validate({"resources": {}, "tolerations": [{}]})
    assert pod_fields(with_nested) == DEFAULT_POD_FIELDS
