"""Deleting a pool: its Pods and its token Secret first, then its row (with its tasks, tokens and
events), refused while it has work that has not ended unless forced."""

from __future__ import annotations

import structlog

from slotpool.domain.pools import Pool
from slotpool.runtime.errors import RuntimeApiError
from slotpool.services.errors import Conflict, RuntimeUnavailable
from slotpool.services.locks import PoolLocks
from slotpool.services.pools import PoolService
from slotpool.services.ports import PoolPasses
from slotpool.services.runtimes import PoolRuntimes
from slotpool.store.uow import Store

log = structlog.get_logger(__name__)


class PoolRemoval:
    def __init__(
        self,
        *,
        store: Store,
        pools: PoolService,
        runtimes: PoolRuntimes,
        locks: PoolLocks,
        passes: PoolPasses,
    ) -> None:
        self._store = store
        self._pools = pools
        self._runtimes = runtimes
        self._locks = locks
        self._passes = passes

    async def remove(self, pool_id: str, *, force: bool, by: str) -> list[str]:
        """Delete the pool with its Pods and token Secret. Refused while it has work that has
        not ended (queued, running or awaiting approval), unless ``force``. Returns the Pods
        deleted."""
        pool = await self._pools.get(pool_id)
        open_work = await self._open_work(pool_id)
        if open_work and not force:
            raise Conflict(
                f"agent pool {pool_id} still has {open_work} tasks queued, running or awaiting "
                "approval: let them finish or cancel them, or delete with force=true (their "
                "Pods are deleted and the tasks with the pool)"
            )
        async with self._locks.of(pool_id):
            # No pass runs now; the Pods the last ones are creating land before the listing.
            await self._passes.settle(pool_id)
            deleted = await self._delete_pods(pool)
            await self._pools.delete(pool_id, by=by)
        self._passes.forget(pool_id)
        log.info("pool deleted", pool_id=pool_id, pods=deleted, forced=force and bool(open_work))
        return deleted

    async def _open_work(self, pool_id: str) -> int:
        async with self._store.unit_of_work() as uow:
            return await uow.tasks.count_open(pool_id)

    async def _delete_pods(self, pool: Pool) -> list[str]:
        """The pool's Pods and Secret, where this server runs them (nothing otherwise)."""
        runtime = self._runtimes.of_type(pool.pool_type)
        namespace = self._runtimes.namespace(pool)
        if runtime is None or namespace is None:
            return []
        deleted: list[str] = []
        try:
            for pod in await runtime.pods(namespace, pool.pool_id):
                await runtime.delete_pod(namespace, pod.name)
                deleted.append(pod.name)
            await runtime.delete_token(namespace, pool.pool_id)
        except RuntimeApiError as exc:
            raise RuntimeUnavailable(
                f"agent pool {pool.pool_id} was not deleted: removing its Pods failed ({exc})"
            ) from exc
        return deleted
