"""Random identifiers (``services/ids.py``): their shape, and every character of the alphabet."""

from __future__ import annotations

import re
from collections import Counter

from slotpool.domain.pools import POOL_ID_ALPHABET, POOL_ID_PATTERN
from slotpool.services.ids import new_pool_id, new_schedule_id, new_task_id, new_token_id


def test_ids_have_their_prefix_and_length_in_the_alphabet() -> None:
    for make, prefix, length in (
        (new_task_id, "task-", 16),
        (new_pool_id, "pool-", 16),
        (new_token_id, "tok-", 16),
        (new_schedule_id, "fs-", 12),
    ):
        made = make()
        assert made.startswith(prefix)
        assert len(made) == len(prefix) + length
        assert set(made[len(prefix) :]) <= set(POOL_ID_ALPHABET)
    assert re.fullmatch(POOL_ID_PATTERN, new_pool_id())


def test_ids_differ_and_use_every_character_about_as_often() -> None:
    made = [new_task_id()[5:] for _ in range(5000)]
    assert len(set(made)) == len(made)
    counts = Counter("".join(made))  # 80,000 characters: about 2,222 each
    assert set(counts) == set(POOL_ID_ALPHABET)
    assert 1800 < min(counts.values()) <= max(counts.values()) < 2650
