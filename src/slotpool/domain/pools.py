"""Agent pools as the rest of slotpool sees them: identity, kind, configuration and audit fields.

Repositories return these, not ORM rows, so services and routes never hold a database object.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from slotpool.domain.agent_spec import PodContext
from slotpool.domain.config import PoolConfig, PoolType, config_hash_of, pod_fields, stored_form
from slotpool.domain.freeze import FreezeSchedule
from slotpool.domain.trusted import trusted

POOL_ID_PATTERN = r"^pool-[a-z0-9]{16}$"
POOL_ID_ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789"
POOL_NAME_PATTERN = r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$"
POOL_NAME_RULE = "1 to 63 lowercase letters, digits and '-', starting and ending alphanumeric"
FREEZE_ID_PATTERN = r"^fs-[a-z0-9]{12}$"

_POOL_ID = re.compile(POOL_ID_PATTERN)


def is_pool_id(value: str) -> bool:
    return _POOL_ID.match(value) is not None


@dataclass(frozen=True)
class OneTimeUnfreeze:
    until: datetime
    by: str
    at: datetime
    note: str = ""


@dataclass(frozen=True)
class Pool:
    pool_id: str
    name: str
    description: str
    pool_type: PoolType
    config: PoolConfig | None  # None until the operator saves one
    # ``pod_fields`` of the effective configuration: the pool's own part of its Pods' config
    # hash, as stored with the configuration; None when the pool has no Pods to build.
    pod_fields: str | None
    freeze_schedules: tuple[FreezeSchedule, ...]
    unfreeze: OneTimeUnfreeze | None
    revision: int
    created_by: str
    created_at: datetime
    updated_by: str
    updated_at: datetime
    agent_token: str | None = None  # the token the pool's Secret holds
    token_generation: int = 0  # bumped by each rotation; part of the Pods' config hash
    rotating_from: str | None = None  # the token a rotation replaced, until no Pod uses it
    backoff_failures: int = 0  # the controller's back-off on Pod creation (scaling.Backoff)
    backoff_last_failure_at: datetime | None = None

    def effective_config(self) -> PoolConfig | None:
        """The configuration Pods are built from: a local pool runs on defaults until it has one;
        a k8s pool has none until an image is saved; a static pool has no Pods at all."""
        return effective_config(self.pool_type, self.config)

    def config_hash(self, context: PodContext) -> str | None:
        """The hash of the Pods the pool's configuration makes in ``context`` (what they carry
        as ``slotpool.io/config-hash``), from the stored ``pod_fields``: no dump of the
        configuration. None when the pool has no Pods to build."""
        config = self.effective_config()
        if config is None or self.pod_fields is None:
            return None
        return config_hash_of(self.pod_fields, context=context.hash_inputs(config))


def effective_config(pool_type: PoolType, config: PoolConfig | None) -> PoolConfig | None:
    if pool_type is PoolType.local:
        return config or trusted(PoolConfig, {})  # the defaults
    return None if pool_type is PoolType.static else config


def has_effective_config(pool_type: PoolType, *, saved: bool) -> bool:
    """Whether ``effective_config`` is one for a pool of ``pool_type`` that has a configuration
    saved (``saved``) or not, known without building it."""
    return pool_type is PoolType.local or (pool_type is PoolType.k8s and saved)


def stored_pod_fields(pool_type: PoolType, config: PoolConfig | None) -> str | None:
    """What a pool of ``pool_type`` with ``config`` keeps as its ``pod_fields``."""
    effective = effective_config(pool_type, config)
    return None if effective is None else pod_fields(effective)


@dataclass(frozen=True)
class StoredConfig:
    """A pool's configuration as it is stored: what was saved (``stored_form``), and the Pod
    fields its Pods' config hash is computed from, which are written together."""

    document: dict[str, Any] | None
    pod_fields: str | None

    @classmethod
    def of(cls, pool_type: PoolType, config: PoolConfig | None) -> StoredConfig:
        document = None if config is None else stored_form(config)
        return cls(document, stored_pod_fields(pool_type, config))
