"""The pool controller as the application starts it: the reconciler (one pass) and the
orchestration over it (what runs in the background), built from the services they use.

It is what the services know as ``PoolPasses`` (``services/ports.py``): the API hands it to the
use cases that need a pass, a wake-up or a pool forgotten.
"""

from __future__ import annotations

from slotpool.clock import Clock
from slotpool.controller.orchestration import Orchestration
from slotpool.controller.reconciler import Reconciler
from slotpool.domain.config import PoolType
from slotpool.domain.pools import Pool
from slotpool.services.freeze import FreezeService
from slotpool.services.locks import PoolLocks
from slotpool.services.no_pods import NoPods
from slotpool.services.notify import Notifier
from slotpool.services.pools import PoolService
from slotpool.services.ports import SyncReport
from slotpool.services.runtimes import PoolRuntimes
from slotpool.services.secret_tokens import SecretTokens
from slotpool.store.uow import Store


class PoolController:
    def __init__(
        self,
        *,
        store: Store,
        runtimes: PoolRuntimes,
        pools: PoolService,
        freeze: FreezeService,
        secrets: SecretTokens,
        locks: PoolLocks,
        notifier: Notifier,
        no_pods: NoPods,
        clock: Clock,
    ) -> None:
        self._runtimes = runtimes
        self._no_pods = no_pods
        self.reconciler = Reconciler(
            store=store,
            pools=pools,
            runtimes=runtimes,
            freeze=freeze,
            secrets=secrets,
            locks=locks,
            clock=clock,
        )
        self.orchestration = Orchestration(
            reconciler=self.reconciler,
            pools=pools,
            runtimes=runtimes,
            notifier=notifier,
            no_pods=no_pods,
            clock=clock,
        )

    async def run_forever(self, resync_seconds: float) -> None:
        await self.orchestration.run_forever(resync_seconds)

    async def first_pass(self) -> None:
        """Returns once the running controller has passed over every pool once."""
        await self.orchestration.passed_all.wait()

    def poke(self, pool_id: str, *, reread: bool = False) -> None:
        self.orchestration.poke(pool_id, reread=reread)

    async def run_pass(self, pool_id: str, *, check_secret: bool) -> SyncReport:
        return await self.reconciler.run_pass(pool_id, check_secret=check_secret)

    async def settle(self, pool_id: str) -> None:
        await self.reconciler.settle(pool_id)

    def forget(self, pool_id: str) -> None:
        self.reconciler.forget(pool_id)
        self._no_pods.forget(pool_id)

    def desired_pods(self, pool_id: str) -> int | None:
        """How many Pods this process's controller last decided the pool needs (None: it has not
        planned the pool, e.g. a static one)."""
        return self.reconciler.desired_pods(pool_id)

    def why_no_pods(self, pool: Pool) -> str | None:
        """Why this server gives the pool no Pods now: no runtime for its type, no
        configuration, or its runtime failing the passes; None when nothing stands in the way."""
        return self._no_pods.why(pool) or self.reconciler.failing(pool.pool_id)

    def why_no_pods_of(self, pool_id: str, pool_type: PoolType, *, configured: bool) -> str | None:
        """``why_no_pods`` of the pool ``pool_id`` of ``pool_type``, configured or not
        (``Pool.effective_config``): for a listing that does not rebuild its pools."""
        why = self._no_pods.why_of(pool_id, pool_type, configured=configured)
        return why or self.reconciler.failing(pool_id)

    async def sweep_orphans(self) -> list[str]:
        """Delete now the Pods labelled for a pool that no longer exists (the background loop
        does it every ``ORPHAN_SWEEP_SECONDS``); returns their names."""
        return await self.orchestration.sweep_orphans()

    async def sync(self, pool: Pool) -> SyncReport:
        """A full pass now, the Secret checked whatever the last check said; refused at once
        (``Conflict``) for a pool this server keeps no Pods for."""
        self._runtimes.for_pool(pool)
        return await self.run_pass(pool.pool_id, check_secret=True)
