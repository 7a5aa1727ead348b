"""Agent pools as the rest of slotpool sees them: identity, kind, configuration and audit fields.

Repositories return these, not ORM rows, so services and routes never hold a database object.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

from slotpool.domain.config import PoolConfig, PoolType
from slotpool.domain.freeze import FreezeSchedule

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
        if self.pool_type is PoolType.local:
            return self.config or PoolConfig()
        return None if self.pool_type is PoolType.static else self.config
