"""Pods of ``local`` pools: agent processes on this host, kept at ``min_replicas``.

The runtime is the truth about which processes live; the database about slots and tasks. A pass
(every second, and on ``sync-deployment``) makes the token "Secret" valid, books pods whose
process has ended (their tasks become lost, with the exit code as the reason), rebuilds idle pods
whose configuration is outdated, and starts pods up to ``min_replicas``. Scaling to demand and
freeze windows belong to the controller, which replaces this loop.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import structlog

from slotpool.domain.config import PoolType
from slotpool.domain.pods import TOKEN_SECRET_KEY, build_pod_manifest, token_secret_name
from slotpool.domain.pools import Pool
from slotpool.domain.tasks import PodState, SlotState
from slotpool.runtime.local import LocalPod, LocalRuntime
from slotpool.services.errors import Conflict, Unauthorized
from slotpool.services.ids import new_token_id
from slotpool.services.lifecycle import retire_pod
from slotpool.services.notify import Notifier
from slotpool.services.pools import Clock, PoolService
from slotpool.services.tokens import TokenService
from slotpool.store.uow import Store

log = structlog.get_logger(__name__)
INTERVAL_SECONDS = 1.0


@dataclass
class SyncReport:
    secret: str = "unchanged"
    created: list[str] = field(default_factory=list)
    rebuilt: list[str] = field(default_factory=list)
    ended: list[str] = field(default_factory=list)


class LocalPodKeeper:
    def __init__(
        self,
        *,
        store: Store,
        runtime: LocalRuntime,
        pools: PoolService,
        tokens: TokenService,
        notifier: Notifier,
        clock: Clock,
    ) -> None:
        self._store = store
        self._runtime = runtime
        self._pools = pools
        self._tokens = tokens
        self._notifier = notifier
        self._clock = clock
        self._lock = asyncio.Lock()

    async def run_forever(self) -> None:
        while True:
            try:
                for pool in await self._local_pools():
                    await self.sync(pool)
            except Exception:  # logged; the next pass tries again
                log.exception("local pods pass failed")
            await asyncio.sleep(INTERVAL_SECONDS)

    async def _local_pools(self) -> list[Pool]:
        pools, _ = await self._pools.list(limit=1000, offset=0, name=None)
        return [p for p in pools if p.pool_type is PoolType.local]

    async def sync(self, pool: Pool) -> SyncReport:
        if pool.pool_type is not PoolType.local:
            raise Conflict(f"{pool.pool_id} is a {pool.pool_type} pool, not a local one")
        async with self._lock:
            report = SyncReport(secret=await self._ensure_secret(pool))
            alive = await self._book_ended(pool, report)
            alive = await self._rebuild_idle_outdated(pool, alive, report)
            self._create_up_to_min(pool, alive, report)
            return report

    async def _ensure_secret(self, pool: Pool) -> str:
        name = token_secret_name(pool.pool_id)
        secret = self._runtime.read_secret(name)
        if secret is not None:
            try:
                identity = await self._tokens.authenticate(secret.get(TOKEN_SECRET_KEY))
            except Unauthorized:
                identity = None
            if identity is not None and identity.pool_id == pool.pool_id:
                return "unchanged"
        token_name = "local-" + new_token_id().removeprefix("tok-")[:8]
        _token, value = await self._tokens.create(
            pool.pool_id, name=token_name, expires_at=None, by="slotpool (local runtime)"
        )
        self._runtime.write_secret(name, {TOKEN_SECRET_KEY: value})
        return "created" if secret is None else "recreated"

    async def _book_ended(self, pool: Pool, report: SyncReport) -> list[LocalPod]:
        alive = []
        now = self._clock()
        for pod in self._runtime.list_pods(pool.pool_id):
            if pod.alive:
                alive.append(pod)
                continue
            code = "unknown" if pod.exit_code is None else str(pod.exit_code)
            reason = f"agent process of {pod.name} ended (exit code {code})"
            async with self._store.unit_of_work() as uow:
                known = await uow.pods.find(pool.pool_id, pod.name)
                if known is not None and known.state is not PodState.failed:
                    await retire_pod(uow, known, reason=reason, now=now, notifier=self._notifier)
            self._runtime.forget(pod.name)
            report.ended.append(pod.name)
            log.warning("local pod ended", pool_id=pool.pool_id, pod=pod.name, reason=reason)
        return alive

    async def _rebuild_idle_outdated(
        self, pool: Pool, alive: list[LocalPod], report: SyncReport
    ) -> list[LocalPod]:
        current = self._pools.config_hash(pool)
        kept = []
        for pod in alive:
            if pod.config_hash == current or not await self._all_idle(pool, pod.name):
                kept.append(pod)
                continue
            await self._runtime.delete_pod(pod.name, grace_seconds=10)
            async with self._store.unit_of_work() as uow:
                known = await uow.pods.find(pool.pool_id, pod.name)
                if known is not None:
                    reason = "replaced: its configuration was outdated and all its slots idle"
                    now = self._clock()
                    await retire_pod(uow, known, reason=reason, now=now, notifier=self._notifier)
            report.rebuilt.append(pod.name)
        return kept

    async def _all_idle(self, pool: Pool, name: str) -> bool:
        """Marks the pod draining in the same transaction that sees all its slots idle, so the
        dispatcher cannot give it a task while it is being replaced."""
        async with self._store.unit_of_work() as uow:
            pod = await uow.pods.find(pool.pool_id, name)
            if pod is None:
                return False  # not registered yet: leave it be for now
            if any(s.state is not SlotState.idle for s in pod.slots):
                return False
            await uow.pods.set_state(
                pod.id, PodState.draining, reason="configuration changed", now=self._clock()
            )
            return True

    def _create_up_to_min(self, pool: Pool, alive: list[LocalPod], report: SyncReport) -> None:
        config = pool.effective_config()
        assert config is not None  # a local pool always has one
        manifest = build_pod_manifest(config, self._pools.pod_context(pool))
        for _ in range(config.min_replicas - len(alive)):
            pod = self._runtime.create_pod(manifest)
            report.created.append(pod.name)
            log.info("local pod started", pool_id=pool.pool_id, pod=pod.name)
