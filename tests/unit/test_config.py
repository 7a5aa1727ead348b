"""The configuration model: strict shape, misplaced keys answered with where they belong."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from slotpool.domain.config import POD_FIELDS, PoolConfig, PoolType, parse_config, stored_form
from slotpool.domain.errors import ConfigInvalid, Issue

# The seed's client bug and its fix, verbatim in shape.
SEED_WRONG = {
    "image": "hashicorp/terraform:1.6",
    "image_pull_policy": "IfNotPresent",
    "cpu_limit": "500m",
    "memory_limit": "512Mi",
    "env": {"TF_LOG": "INFO"},
    "min_replicas": 1,
    "max_replicas": 3,
}
SEED_RIGHT = {
    "image": "hashicorp/terraform:1.6",
    "image_pull_policy": "IfNotPresent",
    "env": {"TF_LOG": "INFO"},
    "resources": {"limits": {"cpu": "500m", "memory": "512Mi"}},
    "min_replicas": 1,
    "max_replicas": 3,
    "freeze_schedules": [
        {"from_time": "23:00", "to_time": "02:00", "weekdays": [5], "timezone": "Europe/Berlin"}
    ],
}


def problems(raw: Any, pool_type: PoolType = PoolType.k8s) -> dict[str, tuple[str, str | None]]:
    with pytest.raises(ConfigInvalid) as caught:
        parse_config(raw, pool_type=pool_type)
    return {issue.path: (issue.message, issue.hint) for issue in caught.value.issues}


def test_seed_wrong_payload_names_where_limits_belong() -> None:
    found = problems(SEED_WRONG)
    assert set(found) == {"cpu_limit", "memory_limit"}
    assert found["cpu_limit"] == ("unknown field", "it belongs at resources.limits.cpu")
    assert found["memory_limit"] == ("unknown field", "it belongs at resources.limits.memory")


def test_seed_right_payload_is_accepted_and_stored_as_sent() -> None:
    config = parse_config(SEED_RIGHT, pool_type=PoolType.k8s)
    stored = stored_form(config)
    assert stored["resources"] == {"limits": {"cpu": "500m", "memory": "512Mi"}}
    assert stored == {k: v for k, v in SEED_RIGHT.items() if k != "freeze_schedules"}


@pytest.mark.parametrize(
    ("payload", "path", "hint_part"),
    [
        ({"cpu_request": "1"}, "cpu_request", "resources.requests.cpu"),
        ({"limits": {"cpu": "1"}}, "limits", "resources.limits"),
        ({"imagePullPolicy": "Always"}, "imagePullPolicy", "image_pull_policy"),
        ({"minReplicas": 2}, "minReplicas", "min_replicas"),
        ({"slots": 2}, "slots", "slots_per_pod"),
        ({"nodeSelector": {}}, "nodeSelector", "node_selector"),
        ({"imgae": "x"}, "imgae", "image"),
        ({"resources": {"cpu": "1"}}, "resources.cpu", "resources.limits.cpu"),
        ({"resources": {"limit": {"cpu": "1"}}}, "resources.limit", "limits"),
        (
            {"freeze_schedules": [{"from": "01:00", "to_time": "02:00", "weekdays": [1]}]},
            "freeze_schedules.0.from",
            "freeze_schedules.0.from_time",
        ),
        ({"tolerations": [{"keys": "a"}]}, "tolerations.0.keys", "tolerations.0.key"),
        ({"zzz_unrelated": 1}, "zzz_unrelated", "valid keys in the configuration"),
    ],
)
def test_unknown_keys_are_refused_with_a_hint(payload: Any, path: str, hint_part: str) -> None:
    found = problems({"image": "busybox", **payload})
    message, hint = found[path]
    assert message == "unknown field"
    assert hint is not None
    assert hint_part in hint


@pytest.mark.parametrize(
    ("payload", "path", "message_part"),
    [
        ({"resources": {"limits": {"cpu": "lots"}}}, "resources.limits.cpu", "not a Kubernetes"),
        ({"resources": {"limits": {"CPU": "1"}}}, "resources.limits.CPU", "lowercase"),
        ({"resources": {"limits": {"gpu": "1"}}}, "resources.limits.gpu", "nvidia.com/gpu"),
        (
            {"resources": {"requests": {"cpu": "2"}, "limits": {"cpu": "1"}}},
            "resources.requests.cpu",
            "above the limit",
        ),
        (
            {"resources": {"requests": {"memory": "1Gi"}, "limits": {"memory": "1G"}}},
            "resources.requests.memory",
            "above the limit",
        ),
        ({"min_replicas": 5, "max_replicas": 3}, "min_replicas", "above max_replicas"),
        ({"min_replicas": -1}, "min_replicas", "greater than or equal to 0"),
        ({"max_replicas": 0}, "max_replicas", "greater than or equal to 1"),
        ({"slots_per_pod": 65}, "slots_per_pod", "less than or equal to 64"),
        ({"slots_per_pod": "4"}, "slots_per_pod", "valid integer"),
        ({"env": {"SLOTPOOL_POOL_ID": "x"}}, "env.SLOTPOOL_POOL_ID", "set by slotpool"),
        ({"env": {"1BAD": "x"}}, "env.1BAD", "C identifier"),
        ({"env": {"FLAG": True}}, "env.FLAG", "valid string"),
        ({"image_pull_policy": "Sometimes"}, "image_pull_policy", "Always"),
        ({"image": "Not An Image"}, "image", "whitespace"),
        ({"image": "acme/Agent:1"}, "image", "lowercase"),
        ({"namespace": "Bad_NS"}, "namespace", "lowercase"),
        ({"labels": {"slotpool.io/pool-id": "x"}}, "labels.slotpool.io/pool-id", "set by slotpool"),
        ({"labels": {"team": "a b"}}, "labels.team", "letters"),
        (
            {"tolerations": [{"operator": "Exists", "value": "x", "key": "k"}]},
            "tolerations.0.value",
            "empty",
        ),
        (
            {"freeze_schedules": [{"from_time": "10:00", "to_time": "10:00", "weekdays": [1]}]},
            "freeze_schedules.0.to_time",
            "",
        ),
    ],
)
def test_invalid_values_name_their_field(payload: Any, path: str, message_part: str) -> None:
    found = problems({"image": "busybox", **payload})
    assert path in found, found
    assert message_part in found[path][0]


def test_image_is_required_for_k8s_pools_only() -> None:
    assert "image" in problems({}, PoolType.k8s)
    assert parse_config({}, pool_type=PoolType.local).image is None


def test_all_problems_are_reported_together() -> None:
    found = problems({"cpu_limit": "1", "memory_limit": "1Gi", "slots_per_pod": 0, "env": 3})
    assert {"cpu_limit", "memory_limit", "slots_per_pod", "env"} <= set(found)


def test_numbers_are_accepted_as_quantities_and_stored_as_strings() -> None:
    config = parse_config(
        {"image": "busybox", "resources": {"limits": {"cpu": 2, "memory": "1Gi"}}},
        pool_type=PoolType.k8s,
    )
    assert stored_form(config)["resources"]["limits"] == {"cpu": "2", "memory": "1Gi"}


def test_defaults() -> None:
    config = PoolConfig()
    assert (config.min_replicas, config.max_replicas, config.slots_per_pod) == (1, 10, 4)
    assert config.image_pull_policy.value == "IfNotPresent"
    assert (config.scale_down_delay_seconds, config.pending_timeout_seconds) == (60, 300)


def test_stored_form_leaves_out_what_was_not_set() -> None:
    config = parse_config({"image": "busybox", "command": None}, pool_type=PoolType.k8s)
    assert stored_form(config) == {"image": "busybox"}


def test_pod_fields_are_config_fields() -> None:
    assert set(POD_FIELDS) <= set(PoolConfig.model_fields)


@given(st.dictionaries(st.text(min_size=1, max_size=12), st.integers(), max_size=4))
def test_arbitrary_payloads_are_accepted_or_refused_never_crash(raw: dict[str, int]) -> None:
    issues: tuple[Issue, ...] = ()
    try:
        parse_config(raw, pool_type=PoolType.local)
    except ConfigInvalid as exc:
        issues = exc.issues
        assert issues, "a refusal always says why"
    assert all(issue.path and issue.message for issue in issues)


@pytest.mark.parametrize("bad", ["a\x00b", "\ud800", "x\udfffy"])
def test_text_that_no_database_can_store_is_refused(bad: str) -> None:
    found = problems({"image": "busybox", "env": {"A": bad}, "command": [bad]})
    assert {"env.A", "command.0"} <= set(found)
