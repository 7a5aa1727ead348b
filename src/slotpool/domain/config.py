"""A pool's configuration (the seed's ``k8s_config``): its shape, its strict validation, its hash.

The seed's first bug was a server that silently stored nothing when a client put ``cpu_limit``
at the top level. Here every unknown key is refused with its field path, and keys that clients
are known to misplace are answered with where they belong. All problems are reported together.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import re
from collections.abc import Callable, Mapping, Sequence
from enum import StrEnum
from functools import lru_cache
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictInt,
    StrictStr,
    ValidationError,
)

from slotpool.domain import k8s_names
from slotpool.domain.bounds import SHAPE_TAGS, StrictModel, at_most_entries, capped, more_issues
from slotpool.domain.errors import ConfigInvalid, Issue, join_path
from slotpool.domain.freeze import FreezeSchedule
from slotpool.domain.quantity import QuantityError, parse_resource_quantity
from slotpool.domain.text import Text


class PoolType(StrEnum):
    k8s = "k8s"
    local = "local"
    static = "static"


class PullPolicy(StrEnum):
    Always = "Always"
    IfNotPresent = "IfNotPresent"
    Never = "Never"


RESERVED_ENV_PREFIX = "SLOTPOOL_"
RESERVED_LABEL_PREFIXES = (
    "slotpool.io/",
    "app.kubernetes.io/managed-by",
    "app.kubernetes.io/component",
)


# What one configuration (or task) may hold: generous for real use, small enough that checking
# and storing it stays cheap.
MAX_ENV_NAME = 256
MAX_ENV_VARS = 256
MAX_MAP_ENTRIES = 64  # labels, annotations, node selector, resource names
MAX_ARGS = 1000  # command and args items
MAX_TOLERATIONS = 64
MAX_FREEZE_SCHEDULES = 100


def _checked(problem: Callable[[str], str | None]) -> Callable[[str], str]:
    def check(value: str) -> str:
        if (text := problem(value)) is not None:
            raise ValueError(text)
        return value

    return check


def _quantity_from_number(value: object) -> object:
    # YAML writes `cpu: 2`; a number is accepted as the quantity it spells, stored as a string.
    if isinstance(value, int | float) and not isinstance(value, bool):
        return format(value, "g") if isinstance(value, float) else str(value)
    return value


def _quantity(value: str) -> str:
    try:
        parse_resource_quantity(value)
    except QuantityError as exc:
        raise ValueError(str(exc)) from None
    return value


def _not_reserved_env(value: str) -> str:
    if value.startswith(RESERVED_ENV_PREFIX):
        raise ValueError(f"names starting with {RESERVED_ENV_PREFIX} are set by slotpool itself")
    return value


def _not_reserved_key(value: str) -> str:
    if value.startswith(RESERVED_LABEL_PREFIXES):
        raise ValueError(f"{value!r} is set by slotpool itself and cannot be overridden")
    return value


Quantity = Annotated[StrictStr, BeforeValidator(_quantity_from_number), AfterValidator(_quantity)]
ResourceName = Annotated[StrictStr, AfterValidator(_checked(k8s_names.resource_name_problem))]
EnvName = Annotated[
    StrictStr,
    Field(max_length=MAX_ENV_NAME),
    AfterValidator(_checked(k8s_names.env_name_problem)),
    AfterValidator(_not_reserved_env),
]
LabelKey = Annotated[
    StrictStr,
    AfterValidator(_checked(k8s_names.qualified_name_problem)),
    AfterValidator(_not_reserved_key),
]
LabelValue = Annotated[StrictStr, AfterValidator(_checked(k8s_names.label_value_problem))]
Image = Annotated[StrictStr, AfterValidator(_checked(k8s_names.image_problem))]
Namespace = Annotated[StrictStr, AfterValidator(_checked(k8s_names.dns_label_problem))]
ServiceAccount = Annotated[StrictStr, AfterValidator(_checked(k8s_names.dns_subdomain_problem))]


class _Strict(StrictModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


Quantities = Annotated[dict[ResourceName, Quantity], at_most_entries(MAX_MAP_ENTRIES)]
Labels = Annotated[dict[LabelKey, LabelValue], at_most_entries(MAX_MAP_ENTRIES)]
Args = Annotated[list[Text], Field(max_length=MAX_ARGS, fail_fast=True)]


class Resources(_Strict):
    requests: Quantities = Field(default_factory=dict)
    limits: Quantities = Field(default_factory=dict)


class TolerationOperator(StrEnum):
    Equal = "Equal"
    Exists = "Exists"


class TaintEffect(StrEnum):
    NoSchedule = "NoSchedule"
    PreferNoSchedule = "PreferNoSchedule"
    NoExecute = "NoExecute"


class Toleration(_Strict):
    key: LabelKey | None = None
    operator: TolerationOperator = TolerationOperator.Equal
    value: LabelValue | None = None
    effect: TaintEffect | None = None
    toleration_seconds: StrictInt | None = Field(default=None, ge=0)


class PoolConfig(_Strict):
    """The whole configuration. Defaults are the product's; see the README's table."""

    image: Image | None = None
    image_pull_policy: PullPolicy = PullPolicy.IfNotPresent
    command: Args | None = None
    args: Args | None = None
    env: Annotated[dict[EnvName, Text], at_most_entries(MAX_ENV_VARS)] = Field(default_factory=dict)
    resources: Resources | None = None
    min_replicas: StrictInt = Field(default=1, ge=0, le=1000)
    max_replicas: StrictInt = Field(default=10, ge=1, le=1000)
    freeze_schedules: list[FreezeSchedule] | None = Field(
        default=None, max_length=MAX_FREEZE_SCHEDULES
    )
    slots_per_pod: StrictInt = Field(default=4, ge=1, le=64)
    namespace: Namespace | None = None
    service_account: ServiceAccount | None = None
    node_selector: Labels = Field(default_factory=dict)
    tolerations: list[Toleration] = Field(default_factory=list, max_length=MAX_TOLERATIONS)
    labels: Labels = Field(default_factory=dict)
    annotations: Annotated[dict[LabelKey, Text], at_most_entries(MAX_MAP_ENTRIES)] = Field(
        default_factory=dict
    )
    scale_down_delay_seconds: StrictInt = Field(default=60, ge=0, le=86_400)
    min_idle_slots: StrictInt = Field(default=0, ge=0, le=64_000)
    pending_timeout_seconds: StrictInt = Field(default=300, ge=10, le=86_400)
    reservation_ttl_seconds: StrictInt = Field(default=86_400, ge=60, le=30 * 86_400)


# The fields that shape the Pod. Only these count in the config hash: changing max_replicas or a
# freeze window changes no Pod, so it must not make slotpool rebuild any.
POD_FIELDS = (
    "image",
    "image_pull_policy",
    "command",
    "args",
    "env",
    "resources",
    "slots_per_pod",
    "namespace",
    "service_account",
    "node_selector",
    "tolerations",
    "labels",
    "annotations",
)

# Keys clients are known to put in the wrong place, by the model they were sent to.
_MISPLACED: dict[str, dict[str, str]] = {
    "config": {
        "cpu_limit": "resources.limits.cpu",
        "memory_limit": "resources.limits.memory",
        "cpu_request": "resources.requests.cpu",
        "memory_request": "resources.requests.memory",
        "ephemeral_storage_limit": "resources.limits.ephemeral-storage",
        "cpu": "resources.limits.cpu (and/or resources.requests.cpu)",
        "memory": "resources.limits.memory (and/or resources.requests.memory)",
        "limits": "resources.limits",
        "requests": "resources.requests",
        "replicas": "min_replicas and max_replicas",
        "slots": "slots_per_pod",
        "pull_policy": "image_pull_policy",
        "service_account_name": "service_account",
        "environment": "env",
        "env_vars": "env",
        "freeze_windows": "freeze_schedules",
    },
    "resources": {
        "cpu": "resources.limits.cpu (and/or resources.requests.cpu)",
        "memory": "resources.limits.memory (and/or resources.requests.memory)",
        "cpu_limit": "resources.limits.cpu",
        "memory_limit": "resources.limits.memory",
        "cpu_request": "resources.requests.cpu",
        "memory_request": "resources.requests.memory",
    },
    "freeze": {
        "from": "from_time",
        "start": "from_time",
        "start_time": "from_time",
        "to": "to_time",
        "end": "to_time",
        "end_time": "to_time",
        "days": "weekdays",
        "tz": "timezone",
        "time_zone": "timezone",
    },
}
_MODEL_FIELDS: dict[str, Sequence[str]] = {
    "config": tuple(PoolConfig.model_fields),
    "resources": tuple(Resources.model_fields),
    "freeze": tuple(FreezeSchedule.model_fields),
    "toleration": tuple(Toleration.model_fields),
}


def _model_of(parent: tuple[str | int, ...]) -> str:
    if not parent:
        return "config"
    if parent == ("resources",):
        return "resources"
    if parent[0] == "freeze_schedules":
        return "freeze"
    return "toleration" if parent[0] == "tolerations" else "config"


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def unknown_key_hint(loc: tuple[str | int, ...]) -> str:
    """Where an unknown key belongs, or the nearest valid names."""
    *parent_parts, key = loc
    parent = tuple(parent_parts)
    model = _model_of(parent)
    prefix = join_path(parent) + "." if parent else ""
    if (target := _MISPLACED.get(model, {}).get(str(key))) is not None:
        # Targets under resources are spelled from the top; the others are siblings of the key.
        return f"it belongs at {target if target.startswith('resources') else prefix + target}"
    fields = _MODEL_FIELDS[model]
    if (snake := _snake(str(key))) in fields:
        return f"did you mean {prefix}{snake}?"
    close = difflib.get_close_matches(str(key), fields, n=2, cutoff=0.6)
    if close:
        return "did you mean " + " or ".join(prefix + c for c in close) + "?"
    where = join_path(parent) or "the configuration"
    return f"valid keys in {where}: {', '.join(fields)}"


def issue_from_error(error: Mapping[str, Any], *, strip: int = 0) -> Issue:
    """One of pydantic's errors as an Issue; ``strip`` drops leading loc parts (FastAPI's
    'body')."""
    loc = tuple(part for part in error["loc"][strip:] if part not in SHAPE_TAGS)
    message = str(error["msg"]).removeprefix("Value error, ")
    hint = None
    if error["type"] != "extra_forbidden":
        # pydantic marks a bad mapping key with a trailing "[key]"; the key is the field.
        loc = loc[:-1] if loc[-1:] == ("[key]",) else loc
    elif loc:
        message, hint = "unknown field", unknown_key_hint(loc)
    return Issue(path=join_path(loc) or "(body)", message=message, hint=hint)


def issues_from_errors(errors: Sequence[Mapping[str, Any]], *, strip: int = 0) -> list[Issue]:
    """pydantic's errors as Issues: the first ``MAX_ISSUES`` (their hints are computed), then how
    many more there are."""
    found = (issue_from_error(error, strip=strip) for error in errors)
    return capped(found, len(errors), more_issues)


def semantic_issues(config: PoolConfig, *, pool_type: PoolType) -> list[Issue]:
    """Rules across fields, checked after the shape is right."""
    issues = []
    if pool_type is PoolType.k8s and config.image is None:
        issues.append(Issue("image", "is required for a k8s pool", "e.g. ghcr.io/acme/agent:1.4"))
    if config.min_replicas > config.max_replicas:
        issues.append(
            Issue(
                "min_replicas",
                f"min_replicas ({config.min_replicas}) is above max_replicas "
                f"({config.max_replicas})",
                "raise max_replicas or lower min_replicas",
            )
        )
    if config.resources is not None:
        issues.extend(_requests_above_limits(config.resources))
    issues.extend(_toleration_issues(config.tolerations))
    issues.extend(_duplicate_schedule_ids(config.freeze_schedules or []))
    return issues


def _requests_above_limits(resources: Resources) -> list[Issue]:
    issues = []
    for name, request in resources.requests.items():
        limit = resources.limits.get(name)
        if limit is not None and parse_resource_quantity(request) > parse_resource_quantity(limit):
            issues.append(
                Issue(
                    f"resources.requests.{name}",
                    f"request {request} is above the limit {limit}",
                    f"a request may be at most its limit (resources.limits.{name})",
                )
            )
    return issues


def _toleration_issues(tolerations: Sequence[Toleration]) -> list[Issue]:
    issues = []
    for i, tol in enumerate(tolerations):
        if tol.operator is TolerationOperator.Exists and tol.value:
            issues.append(Issue(f"tolerations.{i}.value", "must be empty when operator is Exists"))
        if tol.key is None and tol.operator is TolerationOperator.Equal:
            issues.append(Issue(f"tolerations.{i}.key", "is required when operator is Equal"))
        if tol.toleration_seconds is not None and tol.effect is not TaintEffect.NoExecute:
            issues.append(
                Issue(f"tolerations.{i}.toleration_seconds", "only applies to effect NoExecute")
            )
    return issues


def _duplicate_schedule_ids(schedules: Sequence[FreezeSchedule]) -> list[Issue]:
    seen: set[str] = set()
    issues = []
    for i, schedule in enumerate(schedules):
        if schedule.id is not None and schedule.id in seen:
            issues.append(Issue(f"freeze_schedules.{i}.id", f"{schedule.id} appears twice"))
        if schedule.id is not None:
            seen.add(schedule.id)
    return issues


def check_config(config: PoolConfig, *, pool_type: PoolType) -> PoolConfig:
    if issues := semantic_issues(config, pool_type=pool_type):
        raise ConfigInvalid(issues)
    return config


def parse_config(raw: object, *, pool_type: PoolType) -> PoolConfig:
    """Validate a raw payload completely; raises ConfigInvalid with every problem found."""
    try:
        config = PoolConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigInvalid(issues_from_errors(exc.errors())) from None
    return check_config(config, pool_type=pool_type)


def stored_form(config: PoolConfig) -> dict[str, Any]:
    """What goes into ``agent_pools.k8s_config``: what was set, no nulls, windows kept apart."""
    return config.model_dump(
        mode="json", exclude_unset=True, exclude_none=True, exclude={"freeze_schedules"}
    )


# One encoder for every call (``json.dumps`` with options builds a new one each time).
_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def canonical_json(value: object) -> str:
    return _CANONICAL.encode(value)


def pod_fields(config: PoolConfig) -> str:
    """The configuration's part of its config hash: its Pod fields (``POD_FIELDS``), defaults
    applied, as canonical JSON. Stored with the pool (``agent_pools.pod_fields``) whenever its
    configuration is saved, so reading a pool's hash takes no dump of its configuration."""
    return canonical_json(config.model_dump(mode="json", include=set(POD_FIELDS)))


def config_hash(config: PoolConfig, *, context: Mapping[str, str]) -> str:
    """Hash of everything that shapes the Pod: its fields with defaults applied, and the context
    (pool, control-plane URL, namespace) the builder puts into it. Same input, same hash."""
    return config_hash_of(pod_fields(config), context=context)


def config_hash_of(fields: str, *, context: Mapping[str, str]) -> str:
    """``config_hash`` of the configuration whose ``pod_fields`` are ``fields``: the SHA-256 of
    ``canonical_json({"config": <the Pod fields>, "context": context})``, spelled out so that
    the stored fields are hashed as they are ("config" sorts before "context")."""
    payload = f'{{"config":{fields},"context":{_canonical_context(tuple(context.items()))}}}'
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


@lru_cache(maxsize=4096)
def _canonical_context(items: tuple[tuple[str, str], ...]) -> str:
    """``canonical_json`` of a hash's context, remembered: a pool's is the same on every read
    (its id, the control-plane URL, its namespace, ...), and encoding it cost more than the
    hash itself. A few hundred bytes each, for the last 4,096 contexts."""
    return canonical_json(dict(items))
