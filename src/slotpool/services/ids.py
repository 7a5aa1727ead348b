"""Random identifiers; kept out of the domain so that the domain stays deterministic."""

from __future__ import annotations

import secrets

from slotpool.domain.pools import POOL_ID_ALPHABET


def _random(length: int) -> str:
    return "".join(secrets.choice(POOL_ID_ALPHABET) for _ in range(length))


def new_pool_id() -> str:
    return "pool-" + _random(16)


def new_schedule_id() -> str:
    return "fs-" + _random(12)


def new_token_id() -> str:
    return "tok-" + _random(16)


def new_task_id() -> str:
    return "task-" + _random(16)
