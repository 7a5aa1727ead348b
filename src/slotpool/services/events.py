"""Reading a pool's event log (the controller writes it)."""

from __future__ import annotations

from slotpool.domain.events import PoolEvent
from slotpool.services.pools import require_pool
from slotpool.store.uow import Store


class EventService:
    def __init__(self, store: Store) -> None:
        self._store = store

    async def page(
        self, pool_id: str, *, limit: int, before: int | None
    ) -> tuple[list[PoolEvent], int]:
        async with self._store.unit_of_work() as uow:
            await require_pool(uow, pool_id)
            return await uow.events.page(pool_id, limit=limit, before=before)
