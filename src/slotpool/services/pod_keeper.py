"""The pods of ``k8s`` and ``local`` pools, kept in step with the runtime and the configuration.

One keeper serves both pool types through ``PodRuntime`` (``runtime/base.py``). A pass for a pool
(every second in the background, on ``sync-deployment``, and after a configuration is saved):

1. ensures the pool's token Secret holds a token that authenticates for this pool (a new one is
   minted when it is missing or no longer valid);
2. syncs the pods the runtime reports into the database: unknown pods with the pool's labels are
   adopted, the phase, Node and the runtime's reason (e.g. ``Unschedulable: 0/3 nodes ...``) are
   recorded, pods that ended or vanished are retired (their tasks become ``lost`` with the reason)
   and ended ones deleted;
3. inside an active freeze window: deletes the pods whose slots are all idle and creates nothing;
4. otherwise rebuilds every pod with an outdated config whose slots are all idle (delete, then a
   replacement from the current config: the pod count is kept) and creates pods up to
   ``min_replicas``.

A pod is deleted only after ``drain_if_idle`` marked it ``draining`` in the transaction that saw
all its slots idle, so no task can be given to it any more: no path here deletes a pod with a busy
or reserved slot. Every mutation of a pool runs under that pool's lock, so a pass and a rebuild
after a config save never act on each other's half-done work. Scaling to demand belongs to the
controller, which builds on this.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import structlog

from slotpool.domain.config import PoolConfig, PoolType
from slotpool.domain.errors import Issue
from slotpool.domain.pods import build_pod_manifest
from slotpool.domain.pools import Pool
from slotpool.domain.tasks import Pod, PodState, state_from_runtime
from slotpool.runtime.base import PodRuntime, RuntimePod
from slotpool.runtime.errors import PermanentRuntimeError, RuntimeApiError
from slotpool.services.errors import Conflict, Invalid, RuntimeUnavailable, Unauthorized
from slotpool.services.freeze import FreezeService
from slotpool.services.ids import new_token_id
from slotpool.services.lifecycle import retire_pod
from slotpool.services.notify import Notifier
from slotpool.services.pools import Clock, PoolService
from slotpool.services.tokens import TokenService
from slotpool.store.uow import Store

log = structlog.get_logger(__name__)
REBUILD_REASON = "configuration changed: replaced because all its slots were idle"


class RuntimeFailed(Exception):
    """The runtime refused or failed a step of a pass; ``report`` says what was done before."""

    def __init__(self, message: str, report: SyncReport) -> None:
        super().__init__(message)
        self.report = report


@dataclass(frozen=True)
class PendingPod:
    name: str
    reason: str


@dataclass
class SyncReport:
    """What one pass did, pod by pod."""

    secret: str = "unchanged"
    adopted: list[str] = field(default_factory=list)
    created: list[str] = field(default_factory=list)
    rebuilt: list[str] = field(default_factory=list)
    ended: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    kept_busy: list[str] = field(default_factory=list)
    pending: list[PendingPod] = field(default_factory=list)
    frozen: bool = False


class PodKeeper:
    def __init__(
        self,
        *,
        store: Store,
        runtimes: Mapping[PoolType, PodRuntime],
        pools: PoolService,
        freeze: FreezeService,
        tokens: TokenService,
        notifier: Notifier,
        clock: Clock,
    ) -> None:
        self._store = store
        self._runtimes = dict(runtimes)
        self._pools = pools
        self._freeze = freeze
        self._tokens = tokens
        self._notifier = notifier
        self._clock = clock
        self._locks: defaultdict[str, asyncio.Lock] = defaultdict(asyncio.Lock)

    # -- entry points ----------------------------------------------------------------------------

    def runtime_for(self, pool: Pool) -> PodRuntime:
        if pool.pool_type is PoolType.static:
            raise Conflict(
                f"{pool.pool_id} is a static pool: its agents are started by hand, no Pods"
            )
        runtime = self._runtimes.get(pool.pool_type)
        if runtime is None:
            if pool.pool_type is PoolType.k8s:
                raise Conflict(
                    "no Kubernetes cluster is configured in this server: set "
                    "SLOTPOOL_KUBECONFIG (or SLOTPOOL_KUBERNETES_IN_CLUSTER=true) and restart"
                )
            raise Conflict("the local runtime is off in this server (SLOTPOOL_LOCAL_RUNTIME)")
        return runtime

    async def run_forever(self, interval_seconds: float) -> None:
        while True:
            await self.pass_all()
            await asyncio.sleep(interval_seconds)

    async def pass_all(self) -> None:
        pools, _ = await self._pools.list(limit=1000, offset=0, name=None)
        for pool in pools:
            if pool.pool_type not in self._runtimes or pool.effective_config() is None:
                continue
            try:
                await self.sync(pool)
            except Exception:  # logged; the next pass tries again
                log.exception("pod pass failed", pool_id=pool.pool_id)

    async def sync(self, pool: Pool) -> SyncReport:
        """Secret, pods from the runtime into the database, freeze, rebuild, ``min_replicas``."""
        runtime = self.runtime_for(pool)
        async with self._locks[pool.pool_id]:
            pool = await self._pools.get(pool.pool_id)  # the latest config, read under the lock
            config = self._config_of(pool)
            report = SyncReport()
            try:
                await self._pass(pool, config, runtime, report, create=True)
            except RuntimeApiError as exc:
                raise RuntimeFailed(str(exc), report) from exc
            return report

    async def rebuild_idle(self, pool: Pool) -> SyncReport:
        """After a config save: replace every idle pod whose config is outdated now."""
        runtime = self.runtime_for(pool)
        async with self._locks[pool.pool_id]:
            pool = await self._pools.get(pool.pool_id)
            config = self._config_of(pool)
            report = SyncReport()
            log.info("Rebuilding idle pods for pool after config update", pool_id=pool.pool_id)
            try:
                await self._pass(pool, config, runtime, report, create=False)
            except RuntimeApiError as exc:
                raise RuntimeFailed(str(exc), report) from exc
            if not report.frozen:
                log.info(
                    f"Successfully rebuilt {len(report.rebuilt)} idle pods for pool "
                    "with updated configuration",
                    pool_id=pool.pool_id,
                    rebuilt=report.rebuilt,
                    kept_busy=report.kept_busy,
                )
            return report

    def can_run(self, pool: Pool) -> bool:
        """Whether this server runs the pool's pods (a runtime for its type, a config)."""
        return pool.pool_type in self._runtimes and pool.effective_config() is not None

    async def dry_run(self, pool: Pool, manifest: Mapping[str, Any]) -> dict[str, Any]:
        """The Pod as the cluster would admit it; refusals are ``Invalid`` in its words."""
        if pool.pool_type is not PoolType.k8s:
            raise Conflict(f"a dry run needs a k8s pool; {pool.pool_id} is {pool.pool_type}")
        runtime = self.runtime_for(pool)
        try:
            admitted = await runtime.dry_run(manifest)
        except PermanentRuntimeError as exc:
            detail = Issue("k8s_config", f"the API server refused the Pod: {exc.message}")
            raise Invalid("the cluster refused the Pod (dry run)", [detail]) from exc
        except RuntimeApiError as exc:
            raise RuntimeUnavailable(f"the dry run could not reach a verdict: {exc}") from exc
        assert admitted is not None  # the Kubernetes runtime always answers
        return admitted

    # -- one pass ----------------------------------------------------------------------------------

    @staticmethod
    def _config_of(pool: Pool) -> PoolConfig:
        config = pool.effective_config()
        if config is None:
            raise Conflict(f"agent pool {pool.pool_id} has no configuration yet: PUT /k8s-config")
        return config

    async def _pass(
        self,
        pool: Pool,
        config: PoolConfig,
        runtime: PodRuntime,
        report: SyncReport,
        *,
        create: bool,
    ) -> None:
        namespace = self._pools.pod_context(pool).namespace_for(config)
        await runtime.prepare(namespace)
        report.secret = await self._ensure_secret(pool, runtime, namespace)
        alive = await self._observe(pool, runtime, namespace, report)
        freeze = self._freeze.state(pool, self._clock())
        if freeze.active:
            report.frozen = True
            await self._remove_idle(pool, runtime, namespace, alive, report, freeze.reason())
            return
        alive = await self._rebuild_outdated(pool, config, runtime, namespace, alive, report)
        if create:
            await self._create(pool, config, runtime, config.min_replicas - len(alive), report)

    async def _ensure_secret(self, pool: Pool, runtime: PodRuntime, namespace: str) -> str:
        """The Secret must hold a token that authenticates for this pool, else a new one."""
        held = await runtime.read_token(namespace, pool.pool_id)
        if held is not None:
            try:
                identity = await self._tokens.authenticate(held)
            except Unauthorized:
                identity = None
            if identity is not None and identity.pool_id == pool.pool_id:
                return "unchanged"
        name = f"{runtime.name}-" + new_token_id().removeprefix("tok-")[:8]
        _token, value = await self._tokens.create(
            pool.pool_id, name=name, expires_at=None, by=f"slotpool ({runtime.name} runtime)"
        )
        await runtime.write_token(namespace, pool.pool_id, value)
        outcome = "created" if held is None else "recreated"
        log.info("pool token secret " + outcome, pool_id=pool.pool_id, token=name)
        return outcome

    async def _observe(
        self, pool: Pool, runtime: PodRuntime, namespace: str, report: SyncReport
    ) -> list[RuntimePod]:
        """The runtime's pods into the database; returns those that live and are not deleted."""
        listed_at = self._clock()
        seen = await runtime.pods(namespace, pool.pool_id)
        slots = self._config_of(pool).slots_per_pod
        alive: list[RuntimePod] = []
        async with self._store.unit_of_work() as uow:
            known = {p.name: p for p in await uow.pods.of_pool(pool.pool_id)}
            for pod in seen:
                row = known.pop(pod.name, None)
                state = state_from_runtime(
                    row.state if row else None, phase=pod.phase, deleting=pod.deleting
                )
                reason = pod.why() if state in (PodState.pending, PodState.failed) else ""
                if row is None and not pod.ended:
                    await uow.pods.adopt(
                        pool_id=pool.pool_id,
                        name=pod.name,
                        slots=slots,
                        config_hash=pod.config_hash,
                        state=state,
                        phase=pod.phase,
                        node=pod.node,
                        reason=reason,
                        created_at=pod.created_at,
                        now=listed_at,
                    )
                    report.adopted.append(pod.name)
                elif row is not None and pod.ended and row.state is not PodState.failed:
                    why = f"{runtime.name} pod {pod.name} ended: {pod.why() or pod.phase}"
                    await retire_pod(uow, row, reason=why, now=listed_at, notifier=self._notifier)
                    report.ended.append(pod.name)
                    log.warning("pod ended", pool_id=pool.pool_id, pod=pod.name, reason=why)
                elif row is not None:
                    await uow.pods.observed(
                        row.id,
                        state=state,
                        phase=pod.phase,
                        node=pod.node,
                        reason=reason or row.reason,
                        now=listed_at,
                    )
                if state is PodState.pending:
                    report.pending.append(PendingPod(pod.name, reason or "not scheduled yet"))
                if not pod.ended and not pod.deleting:
                    alive.append(pod)
            for row in known.values():
                if _vanished(row, listed_at):
                    why = f"{runtime.name} pod {row.name} vanished (no longer in the runtime)"
                    await retire_pod(uow, row, reason=why, now=listed_at, notifier=self._notifier)
                    report.ended.append(row.name)
                    log.warning("pod vanished", pool_id=pool.pool_id, pod=row.name)
        for pod in seen:
            if pod.ended:  # its record is kept in the database; the runtime's copy goes
                await runtime.delete_pod(namespace, pod.name)
        return alive

    async def _drain_if_idle(self, pool: Pool, name: str, reason: str) -> bool:
        async with self._store.unit_of_work() as uow:
            row = await uow.pods.find(pool.pool_id, name)
            if row is None:
                return False  # never seen by the database: an agent may be about to register
            return await uow.pods.drain_if_idle(row.id, reason=reason, now=self._clock())

    async def _forget(self, pool: Pool, name: str, reason: str) -> None:
        async with self._store.unit_of_work() as uow:
            row = await uow.pods.find(pool.pool_id, name)
            if row is not None:
                now = self._clock()
                await retire_pod(uow, row, reason=reason, now=now, notifier=self._notifier)

    async def _remove_idle(
        self,
        pool: Pool,
        runtime: PodRuntime,
        namespace: str,
        alive: list[RuntimePod],
        report: SyncReport,
        why: str,
    ) -> None:
        for pod in alive:
            if not await self._drain_if_idle(pool, pod.name, f"removed: {why}"):
                report.kept_busy.append(pod.name)
                continue
            await runtime.delete_pod(namespace, pod.name)
            await self._forget(pool, pod.name, f"deleted while idle: {why}")
            report.removed.append(pod.name)
            log.info("idle pod deleted (freeze)", pool_id=pool.pool_id, pod=pod.name, why=why)

    async def _rebuild_outdated(
        self,
        pool: Pool,
        config: PoolConfig,
        runtime: PodRuntime,
        namespace: str,
        alive: list[RuntimePod],
        report: SyncReport,
    ) -> list[RuntimePod]:
        current = self._pools.config_hash(pool)
        outdated = [p for p in alive if p.config_hash != current]
        if not outdated:
            return alive
        idle = [p for p in outdated if await self._drain_if_idle(pool, p.name, REBUILD_REASON)]
        report.kept_busy.extend(p.name for p in outdated if p not in idle)
        if idle:
            log.info(f"Found {len(idle)} idle pods to rebuild for pool", pool_id=pool.pool_id)
        kept = [p for p in alive if p not in idle]
        for number, pod in enumerate(idle, start=1):
            await runtime.delete_pod(namespace, pod.name)
            await self._forget(pool, pod.name, REBUILD_REASON)
            log.info(
                f"Deleted idle pod {pod.name} for rebuild ({number}/{len(idle)})",
                pool_id=pool.pool_id,
            )
            created = await self._create_one(pool, config, runtime)
            report.rebuilt.append(pod.name)
            report.created.append(created.name)
            kept.append(created)
            log.info(
                f"Created replacement pod {created.name} with new config ({number}/{len(idle)})",
                pool_id=pool.pool_id,
            )
        return kept

    async def _create(
        self,
        pool: Pool,
        config: PoolConfig,
        runtime: PodRuntime,
        count: int,
        report: SyncReport,
    ) -> None:
        for _ in range(count):
            created = await self._create_one(pool, config, runtime)
            report.created.append(created.name)
            log.info("pod created", pool_id=pool.pool_id, pod=created.name)

    async def _create_one(self, pool: Pool, config: PoolConfig, runtime: PodRuntime) -> RuntimePod:
        """Create the pod and record it at once, so the next pass does not count it missing."""
        manifest = build_pod_manifest(config, self._pools.pod_context(pool))
        pod = await runtime.create_pod(manifest)
        now = self._clock()
        async with self._store.unit_of_work() as uow:
            state = state_from_runtime(None, phase=pod.phase, deleting=False)
            existing = await uow.pods.find(pool.pool_id, pod.name)
            if existing is None:  # (a local agent may have registered already)
                await uow.pods.adopt(
                    pool_id=pool.pool_id,
                    name=pod.name,
                    slots=config.slots_per_pod,
                    config_hash=pod.config_hash,
                    state=state,
                    phase=pod.phase,
                    node=pod.node,
                    reason="",
                    created_at=now,
                    now=now,
                )
        return pod


def _vanished(row: Pod, listed_at: datetime) -> bool:
    """A recorded pod the runtime did not list. Static agents have no runtime pod, and a row
    newer than the list (an agent that registered meanwhile) cannot have been listed."""
    return row.state is not PodState.failed and row.phase is not None and row.created_at < listed_at
