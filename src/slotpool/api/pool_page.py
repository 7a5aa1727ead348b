"""The pool list, built from the pools as stored and serialised once.

A page of up to 1,000 pools was built as the single pool's answer is, once per pool: each pool
rebuilt into its domain model, then into a ``PoolOut`` with nested models, then serialised; some
200 us of Python per pool. Here each pool is read as stored (``StoredPool``: its row, its current
Pod fields, its windows) and turned straight into the plain values ``PoolOut`` serialises to, in
its field order, and the page is serialised once (``pydantic_core.to_json``, the serialiser the
models use): the same JSON, byte for byte, as the single pool's answer
(``tests/api/test_pool_list_page.py`` holds the two against each other, on both databases).

What the answer shows is worked out as for a single pool, by the same code: the configuration as
stored (``domain.trusted.dumped``: ``stored_form`` of it rebuilt), its config hash from the stored
Pod fields in this server's context (``PoolService.stored_config_hash``), the freeze state of its
windows at one instant for the page, and why it gets no Pods.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pydantic_core

from slotpool.api.deps import Services
from slotpool.api.schemas import PoolOut, freeze_view, schedule_view
from slotpool.domain.config import PoolConfig, PoolType
from slotpool.domain.pools import has_effective_config
from slotpool.domain.trusted import dumped
from slotpool.services.stats import PoolCounts
from slotpool.store.pools import PoolPage, StoredPool

# The fields of a pool's answer, in ``PoolOut``'s order (checked against it at import).
FIELDS = (
    "pool_id",
    "name",
    "description",
    "pool_type",
    "k8s_config",
    "config_hash",
    "freeze",
    "one_time_unfreeze",
    "revision",
    "created_by",
    "created_at",
    "updated_by",
    "updated_at",
    "pods_ready",
    "pods_total",
    "slots_busy",
    "slots_reserved",
    "slots_total",
    "queued_tasks",
    "agent_token",
    "token_generation",
    "no_pods_reason",
)
if tuple(PoolOut.model_fields) != FIELDS:
    raise RuntimeError("PoolOut's fields changed: the pool list (api/pool_page.py) must follow")


def config_view(pool: StoredPool) -> dict[str, Any] | None:
    """``schemas.config_view`` of the pool as stored."""
    saved = pool.columns["k8s_config"]
    if saved is None and not pool.windows:
        return None
    view = {} if saved is None else dumped(PoolConfig, saved)
    view.pop("freeze_schedules", None)  # (``stored_form`` keeps windows apart)
    if pool.windows:
        view["freeze_schedules"] = [schedule_view(s) for s in pool.windows]
    return view


def pool_item(
    services: Services, pool: StoredPool, counts: PoolCounts, now: datetime
) -> dict[str, Any]:
    """What ``PoolOut.of`` makes of the pool, as the plain values it serialises to."""
    row = pool.columns
    pool_id = row["pool_id"]
    pool_type = PoolType(row["pool_type"])
    until, at = row["one_time_unfreeze_until"], row["one_time_unfreeze_at"]
    unfreeze = None
    if until is not None and at is not None:
        unfreeze = {
            "until": until,
            "by": row["one_time_unfreeze_by"] or "",
            "at": at,
            "note": row["one_time_unfreeze_note"] or "",
        }
    freeze = services.freeze.state_of(
        pool.windows, unfreeze_until=None if unfreeze is None else until, now=now
    )
    configured = has_effective_config(pool_type, saved=row["k8s_config"] is not None)
    return {
        "pool_id": pool_id,
        "name": row["name"],
        "description": row["description"],
        "pool_type": pool_type.value,
        "k8s_config": config_view(pool),
        "config_hash": services.pools.stored_config_hash(pool),
        "freeze": freeze_view(freeze),
        "one_time_unfreeze": unfreeze,
        "revision": row["revision"],
        "created_by": row["created_by"],
        "created_at": row["created_at"],
        "updated_by": row["updated_by"],
        "updated_at": row["updated_at"],
        **counts.fields(),
        "agent_token": row["agent_token"],
        "token_generation": row["token_generation"] or 0,
        "no_pods_reason": services.controller.why_no_pods_of(
            pool_id, pool_type, configured=configured
        ),
    }


async def page_json(services: Services, page: PoolPage, *, limit: int, offset: int) -> bytes:
    """The ``PoolList`` of ``page`` as JSON, with the pools' counts (one query for the page)."""
    counts = await services.stats.pool_counts([p.columns["pool_id"] for p in page.pools])
    now = services.pools.now()
    items = [pool_item(services, p, counts[p.columns["pool_id"]], now) for p in page.pools]
    return pydantic_core.to_json(
        {"items": items, "total": page.total, "limit": limit, "offset": offset}
    )
