"""Random identifiers; kept out of the domain so that the domain stays deterministic."""

from __future__ import annotations

import secrets

from slotpool.domain.pools import POOL_ID_ALPHABET

_SIZE = len(POOL_ID_ALPHABET)
_BELOW = 256 - 256 % _SIZE  # bytes from here up are dropped: every character equally likely


def _random(length: int) -> str:
    """``length`` characters of the alphabet, uniformly: from one read of the system's random
    source, not one per character (a task's id is made on every submission)."""
    chars: list[str] = []
    while len(chars) < length:
        chars += [
            POOL_ID_ALPHABET[b % _SIZE] for b in secrets.token_bytes(2 * length) if b < _BELOW
        ]
    return "".join(chars[:length])


def new_pool_id() -> str:
    return "pool-" + _random(16)


def new_schedule_id() -> str:
    return "fs-" + _random(12)


def new_token_id() -> str:
    return "tok-" + _random(16)


def new_task_id() -> str:
    return "task-" + _random(16)
