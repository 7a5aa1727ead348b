"""The pool controller: the pods of ``k8s`` and ``local`` pools, kept to what the work needs.

One controller serves both pool types through ``PodRuntime`` (``runtime/base.py``). A pass over a
pool (one at a time per pool, pools in parallel) runs when something happened to it (a task
queued, a slot freed, an agent registered or went silent, the config or freeze windows saved), when
its plan asked to be woken (a delay ending, a pending timeout, a freeze boundary), on
``sync-deployment`` and at least every ``resync`` seconds:

1. **observe**: the token Secret must hold a token that authenticates for this pool (checked on
   sync and every ``SECRET_CHECK_SECONDS``; a new token is minted when it does not); the runtime's
   pods go into the database: unknown pods with the pool's labels are adopted, phase, Node and the
   runtime's reason (``Unschedulable: 0/3 nodes ...``) recorded, pods that ended or vanished
   retired (their tasks become ``lost`` with the reason) and ended ones deleted;
2. **decide**: ``slotpool.domain.scaling.plan`` (pure) turns the pods, their slots, the queue,
   the freeze and the back-off into actions and holds, each with a reason;
3. **act**: create Pods (bounded concurrency), delete or rebuild idle ones. A Pod is deleted only
   after ``drain_if_idle`` marked it ``draining`` in the transaction that saw all its slots idle,
   so no task can be given to it any more: no path here deletes a Pod with a busy or reserved
   slot, whatever the plan says;
4. **record**: every action and every new hold is a pool event (inputs, action, reason), and
   queued tasks say why they wait.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import defaultdict
from collections.abc import Hashable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import structlog

from slotpool.clock import Clock
from slotpool.domain.agent_spec import AgentSpec, agent_spec
from slotpool.domain.config import PoolConfig
from slotpool.domain.errors import Issue
from slotpool.domain.events import NewEvent, Outcome
from slotpool.domain.freeze import FreezePolicy
from slotpool.domain.pods import Pod, PodState, SlotState, state_from_runtime
from slotpool.domain.pools import Pool
from slotpool.domain.scaling import (
    Action,
    Backoff,
    CreatePods,
    DeleteStuckPod,
    Observation,
    Plan,
    PodObservation,
    Reason,
    RebuildPod,
    plan,
)
from slotpool.domain.signals import Signal, Topic
from slotpool.runtime.base import NoRuntime, PodRuntime, PodWatcher, RuntimePod, RuntimeRegistry
from slotpool.runtime.errors import PermanentRuntimeError, RuntimeApiError
from slotpool.services.errors import Conflict, Invalid, NotFound, RuntimeUnavailable, Unauthorized
from slotpool.services.freeze import FreezeService
from slotpool.services.ids import new_token_id
from slotpool.services.lifecycle import retire_pod
from slotpool.services.notify import Notifier
from slotpool.services.pools import PoolService
from slotpool.services.tokens import TokenService
from slotpool.store.uow import Store

log = structlog.get_logger(__name__)
SECRET_CHECK_SECONDS = 30.0
CREATE_CONCURRENCY = 8
WATCH_RETRY_SECONDS = 1.0
WATCH_RETRY_MAX_SECONDS = 30.0
EVENTS_KEPT = 1000
ORPHAN_SWEEP_SECONDS = 30.0
# The full list of pools is read this often (or every resync, if longer): it finds pools that
# another server process created and stops the workers of deleted ones. A pool this process
# creates or configures is poked and read alone at once, and each worker passes every resync.
LISTING_SECONDS = 30.0
# Records of ended pods stay this long (the API and UI show why they ended), then go.
ENDED_KEPT = timedelta(minutes=10)
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
    """What one pass did, pod by pod, and the decision behind it."""

    secret: str = "unchanged"
    adopted: list[str] = field(default_factory=list)
    created: list[str] = field(default_factory=list)
    rebuilt: list[str] = field(default_factory=list)
    ended: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    kept_busy: list[str] = field(default_factory=list)
    pending: list[PendingPod] = field(default_factory=list)
    frozen: bool = False
    failures: list[str] = field(default_factory=list)
    decision: dict[str, Any] = field(default_factory=dict)


@dataclass
class _PoolState:
    """What the controller remembers of a pool between passes. The back-off is also written to
    the pool's row and read back by the first pass after a restart; the holds are not (after a
    restart the current hold is recorded once more)."""

    backoff: Backoff = field(default_factory=Backoff)
    backoff_loaded: bool = False
    holds: frozenset[tuple[str, str]] = frozenset()
    secret_checked: float | None = None
    wake_at: datetime | None = None
    poked: asyncio.Event = field(default_factory=asyncio.Event)


class PoolController:
    def __init__(
        self,
        *,
        store: Store,
        runtimes: RuntimeRegistry,
        pools: PoolService,
        tokens: TokenService,
        notifier: Notifier,
        freeze: FreezeService,
        clock: Clock,
    ) -> None:
        self._store = store
        self._runtimes = runtimes
        self._pools = pools
        self._tokens = tokens
        self._notifier = notifier
        self._freeze = freeze
        self._clock = clock
        self._locks: defaultdict[str, asyncio.Lock] = defaultdict(asyncio.Lock)
        self._state: dict[str, _PoolState] = {}
        self._managed: set[str] = set()  # pools with a worker
        self._known: set[str] = set()  # pools seen by the last listings
        self._listing = asyncio.Event()
        self._new: set[str] = set()  # poked pools not seen yet: read at once, alone
        notifier.listen(self._on_wake)

    # -- entry points ----------------------------------------------------------------------------

    def runtime_for(self, pool: Pool) -> PodRuntime:
        try:
            return self._runtimes.get(pool.pool_type, pool.pool_id)
        except NoRuntime as exc:
            raise Conflict(str(exc)) from None

    def can_run(self, pool: Pool) -> bool:
        """Whether this server runs the pool's pods (a runtime for its type, a config)."""
        return pool.pool_type in self._runtimes and pool.effective_config() is not None

    def poke(self, pool_id: str, *, reread: bool = False) -> None:
        """Something happened to the pool: its worker passes again now. A pool without a worker
        that was not seen yet (one just created), or any with ``reread`` (its configuration
        was saved: it may have become one to keep), is read at once and gets one if it needs
        it. (Pools seen and not kept, static ones, need nothing on their frequent wake-ups.)"""
        if pool_id in self._managed:
            self._pool_state(pool_id).poked.set()
        elif reread or pool_id not in self._known:
            self._new.add(pool_id)
            self._listing.set()

    def _pool_state(self, pool_id: str) -> _PoolState:
        return self._state.setdefault(pool_id, _PoolState())

    def _on_wake(self, key: Hashable) -> None:
        if isinstance(key, Signal) and key.topic in (Topic.pool, Topic.pool_config):
            self.poke(key.key, reread=key.topic is Topic.pool_config)

    async def sync(self, pool: Pool) -> SyncReport:
        """A full pass now, the Secret checked whatever the last check said."""
        return await self.reconcile(pool, check_secret=True)

    async def rebuild_idle(self, pool: Pool) -> SyncReport:
        """After a config save: a pass, which rebuilds every idle outdated Pod."""
        log.info("Rebuilding idle pods for pool after config update", pool_id=pool.pool_id)
        report = await self.reconcile(pool, check_secret=False)
        if not report.frozen:
            log.info(
                f"Successfully rebuilt {len(report.rebuilt)} idle pods for pool "
                "with updated configuration",
                pool_id=pool.pool_id,
                rebuilt=report.rebuilt,
                kept_busy=report.kept_busy,
            )
        return report

    async def reconcile(self, pool: Pool, *, check_secret: bool) -> SyncReport:
        self.runtime_for(pool)  # refuse at once a pool this server keeps no pods for
        return await self._reconcile(pool.pool_id, check_secret=check_secret)

    async def _reconcile(self, pool_id: str, *, check_secret: bool) -> SyncReport:
        async with self._locks[pool_id]:
            pool = await self._pools.get(pool_id)  # the latest config, read under the lock
            runtime = self.runtime_for(pool)
            config = self._config_of(pool)
            report = SyncReport()
            try:
                await self._pass(pool, config, runtime, report, check_secret=check_secret)
            except RuntimeApiError as exc:
                raise RuntimeFailed(str(exc), report) from exc
            if report.failures:
                raise RuntimeFailed("; ".join(report.failures), report)
            return report

    async def dry_run(self, pool: Pool, spec: AgentSpec) -> dict[str, Any]:
        """The Pod as the cluster would admit it; refusals are ``Invalid`` in its words."""
        runtime = self._runtimes.dry_runner(pool.pool_type)
        if runtime is None:
            self.runtime_for(pool)  # no runtime at all: it says why (static, none configured)
            raise Conflict(f"a dry run needs a k8s pool; {pool.pool_id} is {pool.pool_type}")
        try:
            admitted = await runtime.dry_run(spec)
        except PermanentRuntimeError as exc:
            detail = Issue("k8s_config", f"the API server refused the Pod: {exc.message}")
            raise Invalid("the cluster refused the Pod (dry run)", [detail]) from exc
        except RuntimeApiError as exc:
            raise RuntimeUnavailable(f"the dry run could not reach a verdict: {exc}") from exc
        return admitted

    async def remove_pool(self, pool_id: str, *, force: bool) -> list[str]:
        """Delete a pool with its Pods and token Secret. Refused while it has work that has not
        ended (queued, running or awaiting approval), unless ``force``. Returns the Pods deleted."""
        pool = await self._pools.get(pool_id)
        async with self._store.unit_of_work() as uow:
            open_work = await uow.tasks.count_open(pool_id)
        if open_work and not force:
            raise Conflict(
                f"agent pool {pool_id} still has {open_work} tasks queued, running or awaiting "
                "approval: let them finish or cancel them, or delete with force=true (their "
                "Pods are deleted and the tasks with the pool)"
            )
        deleted: list[str] = []
        runtime = self._runtimes.find(pool.pool_type)
        config = pool.effective_config()
        async with self._locks[pool_id]:
            if runtime is not None and config is not None:
                namespace = self._pools.pod_context(pool).namespace_for(config)
                try:
                    for pod in await runtime.pods(namespace, pool_id):
                        await runtime.delete_pod(namespace, pod.name)
                        deleted.append(pod.name)
                    await runtime.delete_token(namespace, pool_id)
                except RuntimeApiError as exc:
                    raise RuntimeUnavailable(
                        f"agent pool {pool_id} was not deleted: removing its Pods failed ({exc})"
                    ) from exc
            await self._pools.delete(pool_id)
        self._state.pop(pool_id, None)
        log.info("pool deleted", pool_id=pool_id, pods=deleted, forced=force and bool(open_work))
        return deleted

    async def sweep_orphans(self) -> list[str]:
        """Delete pods labelled for a pool that no longer exists (in the namespaces in use)."""
        pools = await self._all_pools()
        known = {p.pool_id for p in pools}
        removed: list[str] = []
        for pool_type, runtime in self._runtimes.items():
            namespaces = {self._pools.default_namespace}
            for pool in pools:
                config = pool.effective_config()
                if pool.pool_type is pool_type and config is not None:
                    namespaces.add(self._pools.pod_context(pool).namespace_for(config))
            for namespace in sorted(namespaces):
                try:
                    found = await runtime.all_pods(namespace)
                except RuntimeApiError as exc:
                    if exc.status != 404:  # a namespace nobody made yet has no orphans
                        log.warning("orphan sweep failed", namespace=namespace, error=str(exc))
                    continue
                for pod in found:
                    if pod.pool_id not in known and not pod.deleting:
                        await runtime.delete_pod(namespace, pod.name)
                        removed.append(pod.name)
                        log.warning("orphan pod deleted", pod=pod.name, pool_id=pod.pool_id)
        return removed

    # -- running in the background ---------------------------------------------------------------

    async def run_forever(self, resync_seconds: float) -> None:
        """One worker per pool with pods to keep, passing every resync. The list of pools is
        read every ``LISTING_SECONDS`` (or resync, if longer); a poke for a pool not seen yet
        reads that pool alone at once. Where
        the runtime can watch its Pods (Kubernetes), one watch per namespace in use wakes the
        pool whose Pod changed, so a Pod that starts, ends or is deleted behind slotpool's back
        is handled now rather than at the next resync."""
        workers: dict[str, asyncio.Task[None]] = {}
        watchers: dict[tuple[str, str], asyncio.Task[None]] = {}
        loop = asyncio.get_running_loop()
        next_listing = next_orphan_sweep = loop.time()
        try:
            while True:
                if loop.time() >= next_orphan_sweep:
                    next_orphan_sweep = loop.time() + ORPHAN_SWEEP_SECONDS
                    try:
                        await self.sweep_orphans()
                    except Exception:  # logged; the next sweep tries again
                        log.exception("orphan sweep failed")
                self._listing.clear()  # a poke from here on is seen by the next round
                new, self._new = self._new, set()
                if loop.time() >= next_listing:  # every pool, every LISTING_SECONDS at most
                    next_listing = loop.time() + max(resync_seconds, LISTING_SECONDS)
                    managed = await self._listed(workers)
                    if managed is not None:
                        self._keep_watches(watchers, managed, prune=True)
                else:  # woken for pools not seen yet: only those are read, not the list
                    managed = await self._looked_up(new, workers)
                    self._keep_watches(watchers, managed, prune=False)
                for pool in managed or []:
                    if pool.pool_id not in workers:
                        worker = self._worker(pool.pool_id, resync_seconds)
                        workers[pool.pool_id] = asyncio.create_task(worker)
                self._managed = set(workers)
                with contextlib.suppress(TimeoutError):
                    wait = max(next_listing - loop.time(), 0.0)
                    await asyncio.wait_for(self._listing.wait(), wait)
        finally:
            tasks = [*workers.values(), *watchers.values()]
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    def _keep_watches(
        self,
        watchers: dict[tuple[str, str], asyncio.Task[None]],
        managed: list[Pool],
        *,
        prune: bool,
    ) -> None:
        """A watch for each (runtime, namespace) the pools use; with ``prune`` (``managed`` is
        every managed pool), none for any other."""
        wanted: dict[tuple[str, str], PodWatcher] = {}
        for pool in managed:
            runtime = self._runtimes.watcher(pool.pool_type)
            config = pool.effective_config()
            if runtime is not None and config is not None:
                namespace = self._pools.pod_context(pool).namespace_for(config)
                wanted[(pool.pool_type.value, namespace)] = runtime
        for key, watcher in wanted.items():
            if key not in watchers:
                watchers[key] = asyncio.create_task(self._watch(watcher, key[1]))
        if prune:
            for key in set(watchers) - set(wanted):
                watchers.pop(key).cancel()

    async def _watch(self, runtime: PodWatcher, namespace: str) -> None:
        """Wake the pool of every Pod that changes; after a failure, watch again (1 s, doubling
        to 30 s). The resync goes on meanwhile, so a lost watch only makes reactions slower."""
        delay = WATCH_RETRY_SECONDS
        while True:
            try:
                async for pool_id in runtime.watch_pools(namespace):
                    delay = WATCH_RETRY_SECONDS
                    self.poke(pool_id)
            except Exception as exc:  # logged; watched again after the delay
                log.warning("pod watch failed", namespace=namespace, error=str(exc), retry=delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, WATCH_RETRY_MAX_SECONDS)

    async def _listed(self, workers: dict[str, asyncio.Task[None]]) -> list[Pool] | None:
        """Every pool this server runs; the workers of the others are stopped. None: the
        listing failed (logged), nothing changes."""
        try:
            managed = await self._managed_pools()
        except Exception:  # logged; the next round tries again
            log.exception("listing pools failed")
            return None
        wanted = {p.pool_id for p in managed}
        for pool_id in set(workers) - wanted:
            workers.pop(pool_id).cancel()
            self._state.pop(pool_id, None)
        return managed

    async def _looked_up(
        self, pool_ids: set[str], workers: dict[str, asyncio.Task[None]]
    ) -> list[Pool]:
        """The pools among ``pool_ids`` this server runs, read one by one (a new pool, a Pod
        of a pool not seen yet)."""
        found: list[Pool] = []
        for pool_id in sorted(pool_ids - set(workers)):
            try:
                pool = await self._pools.get(pool_id)
            except NotFound:
                continue  # (an orphan's Pod: the orphan sweep deletes it)
            except Exception:  # logged; the next listing finds it
                log.exception("reading a new pool failed", pool_id=pool_id)
                continue
            finally:
                self._known.add(pool_id)
            if self.can_run(pool):
                found.append(pool)
        return found

    async def _all_pools(self) -> list[Pool]:
        """Every pool, page by page; remembered as known (a poke for one needs no listing)."""
        found: list[Pool] = []
        while True:
            page, total = await self._pools.list(limit=1000, offset=len(found), name=None)
            found += page
            if not page or len(found) >= total:
                self._known.update(p.pool_id for p in found)
                return found

    async def _managed_pools(self) -> list[Pool]:
        return [p for p in await self._all_pools() if self.can_run(p)]

    async def _worker(self, pool_id: str, resync_seconds: float) -> None:
        state = self._pool_state(pool_id)
        while True:
            state.poked.clear()
            try:
                await self._reconcile(pool_id, check_secret=False)
            except NotFound:
                return  # the pool was deleted
            except RuntimeFailed as exc:
                log.warning("pool pass failed", pool_id=pool_id, error=str(exc))
            except Conflict as exc:
                log.info("pool not kept", pool_id=pool_id, why=exc.message)
            except Exception:  # logged; the next pass tries again
                log.exception("pool pass failed", pool_id=pool_id)
            timeout = resync_seconds
            if state.wake_at is not None:
                until = (state.wake_at - self._clock()).total_seconds()
                timeout = min(timeout, max(until, 0.05))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(state.poked.wait(), timeout)

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
        check_secret: bool,
    ) -> None:
        state = self._pool_state(pool.pool_id)
        namespace = self._pools.pod_context(pool).namespace_for(config)
        await runtime.prepare(namespace)
        loop_now = asyncio.get_running_loop().time()
        stale = (
            state.secret_checked is None or loop_now - state.secret_checked > SECRET_CHECK_SECONDS
        )
        if check_secret or stale:
            report.secret = await self._ensure_secret(pool, runtime, namespace)
            state.secret_checked = loop_now
        if not state.backoff_loaded:  # the first pass of this process: resume the back-off
            state.backoff = Backoff(pool.backoff_failures, pool.backoff_last_failure_at)
            state.backoff_loaded = True
        alive = await self._observe(pool, config, runtime, namespace, report)
        now = self._clock()
        observation = await self._observation(pool, config, alive, now)
        decided = plan(observation, now)
        backoff_moved = decided.backoff != state.backoff
        state.backoff, state.wake_at = decided.backoff, decided.wake_at
        report.frozen = observation.freeze.active
        report.kept_busy = [
            p.name for p in observation.pods if observation.outdated(p) and not p.all_idle
        ]
        report.decision = decided.summary()
        events = await self._act(pool, config, runtime, namespace, decided, report)
        events += self._new_holds(pool.pool_id, decided)
        if not decided.actions:  # settled: the rotation may be complete
            events += await self._finish_rotation(pool, observation)
        await self._record(pool, observation, decided, events, backoff_moved=backoff_moved)

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
        name = await self._mint_secret_token(pool, runtime, namespace)
        outcome = "created" if held is None else "recreated"
        log.info("pool token secret " + outcome, pool_id=pool.pool_id, token=name)
        return outcome

    async def _mint_secret_token(self, pool: Pool, runtime: PodRuntime, namespace: str) -> str:
        """A new token into the pool's Secret, recorded as the one the Secret holds."""
        name = f"{runtime.name}-" + new_token_id().removeprefix("tok-")[:8]
        _token, value = await self._tokens.create(
            pool.pool_id, name=name, expires_at=None, by=f"slotpool ({runtime.name} runtime)"
        )
        await runtime.write_token(namespace, pool.pool_id, value)
        async with self._store.unit_of_work() as uow:
            await uow.pools.set_token_state(pool.pool_id, agent_token=name)
        return name

    async def rotate_secret_token(
        self, pool_id: str, *, overlap: timedelta, by: str
    ) -> tuple[str, str | None, SyncReport]:
        """Rotate the token in the pool's Secret: a new token goes in, the generation counted in
        the Pods' config hash moves (idle Pods are rebuilt now, busy ones once idle), and the old
        token stays valid until no Pod runs with it or ``overlap`` ends, whichever is first.
        Returns (new token name, old token name, the pass's report)."""
        pool = await self._pools.get(pool_id)
        runtime = self.runtime_for(pool)
        config = self._config_of(pool)
        namespace = self._pools.pod_context(pool).namespace_for(config)
        async with self._locks[pool_id]:
            old = pool.agent_token
            try:
                new = await self._mint_secret_token(pool, runtime, namespace)
            except RuntimeApiError as exc:
                raise RuntimeUnavailable(f"the token was not rotated: {exc}") from exc
            now = self._clock()
            async with self._store.unit_of_work() as uow:
                if old is not None:
                    token = await uow.pool_tokens.by_name(pool_id, old)
                    if token is not None:
                        await uow.pool_tokens.expire(token.id, at=now + overlap)
                await uow.pools.set_token_state(
                    pool_id,
                    token_generation=pool.token_generation + 1,
                    rotating_from=old if old is not None else pool.rotating_from,
                )
                await uow.events.add(
                    pool_id,
                    [
                        NewEvent(
                            action="rotate_token",
                            reason="token_rotation",
                            message=f"{by} rotated the Secret's token {old or '-'} -> {new}; "
                            f"the old one is valid until no Pod uses it, at most until "
                            f"{_utc(now + overlap)}",
                            outcome=Outcome.done,
                            inputs={"old": old, "new": new},
                        )
                    ],
                    now=now,
                )
            self._pool_state(pool_id).secret_checked = asyncio.get_running_loop().time()
        report = await self.reconcile(pool, check_secret=False)
        return new, old, report

    async def _finish_rotation(self, pool: Pool, observation: Observation) -> list[NewEvent]:
        """Once no Pod runs with the token a rotation replaced, revoke it."""
        old = pool.rotating_from
        if old is None or any(observation.outdated(p) for p in observation.pods):
            return []
        async with self._store.unit_of_work() as uow:
            token = await uow.pool_tokens.by_name(pool.pool_id, old)
            if token is not None and token.name != pool.agent_token:
                await uow.pool_tokens.revoke(token.id, now=self._clock())
            await uow.pools.set_token_state(pool.pool_id, rotating_from=None)
        log.info("rotated-out token revoked", pool_id=pool.pool_id, token=old)
        text = f"every Pod runs with the new token: the rotated-out token {old} is revoked"
        return [
            NewEvent(
                action="revoke_token",
                reason="rotation_done",
                message=text,
                outcome=Outcome.done,
                inputs=observation.inputs(),
            )
        ]

    async def _observe(
        self,
        pool: Pool,
        config: PoolConfig,
        runtime: PodRuntime,
        namespace: str,
        report: SyncReport,
    ) -> list[RuntimePod]:
        """The runtime's pods into the database; returns those that live and are not deleted."""
        listed_at = self._clock()
        seen = await runtime.pods(namespace, pool.pool_id)
        alive: list[RuntimePod] = []
        async with self._store.unit_of_work() as uow:
            known = {p.name: p for p in await uow.pods.of_pool(pool.pool_id)}
            for pod in seen:
                row = known.pop(pod.name, None)
                state = state_from_runtime(
                    row.state if row else None, phase=pod.phase, deleting=pod.deleting
                )
                reason = pod.why() if state in (PodState.pending, PodState.failed) else ""
                if state is PodState.terminating and not (row and row.reason):
                    reason = f"{runtime.name} pod {pod.name} is being deleted, not by slotpool"
                if row is None and not pod.ended:
                    await uow.pods.adopt(
                        pool_id=pool.pool_id,
                        name=pod.name,
                        slots=config.slots_per_pod,
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
                    await retire_pod(uow, row, reason=why, now=listed_at)
                    report.ended.append(pod.name)
                    log.warning("pod ended", pool_id=pool.pool_id, pod=pod.name, reason=why)
                elif (
                    row is not None
                    and row.state is not PodState.failed
                    and _changed(row, state, pod, reason)
                ):
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
            cutoff = listed_at - ENDED_KEPT
            await uow.pods.forget(
                [
                    r.id
                    for r in known.values()
                    if r.state is PodState.failed and r.updated_at and r.updated_at < cutoff
                ]
            )
            for row in known.values():
                if not _vanished(row, listed_at):
                    continue
                if row.state is PodState.terminating and row.reason:  # deleted, now gone
                    why = row.reason
                else:
                    why = f"{runtime.name} pod {row.name} vanished (no longer in the runtime)"
                    report.ended.append(row.name)
                    log.warning("pod vanished", pool_id=pool.pool_id, pod=row.name)
                await retire_pod(uow, row, reason=why, now=listed_at)
        for pod in seen:
            if pod.ended:  # its record is kept in the database; the runtime's copy goes
                await runtime.delete_pod(namespace, pod.name)
        return alive

    async def _observation(
        self, pool: Pool, config: PoolConfig, alive: list[RuntimePod], now: datetime
    ) -> Observation:
        state = self._pool_state(pool.pool_id)
        async with self._store.unit_of_work() as uow:
            rows = {p.name: p for p in await uow.pods.of_pool(pool.pool_id)}
            queued = await uow.tasks.count_queued(pool.pool_id)
        pods = tuple(_pod_observation(rows[pod.name], pod) for pod in alive if pod.name in rows)
        return Observation(
            pool_id=pool.pool_id,
            config=config,
            config_hash=self._pools.config_hash(pool) or "",
            freeze=self._freeze.state(pool, now),
            queued=queued,
            pods=pods,
            backoff=state.backoff,
            next_freeze_boundary=self._freeze.next_boundary(pool, now),
        )

    # -- act ---------------------------------------------------------------------------------------

    async def _act(
        self,
        pool: Pool,
        config: PoolConfig,
        runtime: PodRuntime,
        namespace: str,
        decided: Plan,
        report: SyncReport,
    ) -> list[NewEvent]:
        events: list[NewEvent] = []
        for action in decided.actions:
            try:
                outcome, pod = await self._apply(pool, config, runtime, namespace, action, report)
            except RuntimeApiError as exc:
                report.failures.append(f"{action.kind} failed: {exc}")
                events.append(_event(action, decided, Outcome.failed, f" ({exc})"))
                log.warning(
                    "action failed", pool_id=pool.pool_id, action=action.kind, error=str(exc)
                )
                continue
            events.append(_event(action, decided, outcome, pod=pod))
        return events

    async def _apply(
        self,
        pool: Pool,
        config: PoolConfig,
        runtime: PodRuntime,
        namespace: str,
        action: Action,
        report: SyncReport,
    ) -> tuple[Outcome, str | None]:
        if isinstance(action, CreatePods):
            created = await self._create(pool, config, runtime, action.count)
            report.created += created
            log.info("pods created", pool_id=pool.pool_id, pods=created, reason=action.reason)
            return Outcome.done, ", ".join(created) or None
        if isinstance(action, DeleteStuckPod):
            await runtime.delete_pod(namespace, action.name)
            await self._terminating(pool, action.name, f"deleted: {action.message}")
            report.removed.append(action.name)
            log.warning("stuck pod deleted", pool_id=pool.pool_id, pod=action.name)
            return Outcome.done, action.name
        if not await self._drain_if_idle(pool, action.name, action.message):
            # A task took a slot between the observation and now: the Pod stays.
            return Outcome.held, action.name
        await runtime.delete_pod(namespace, action.name)
        if isinstance(action, RebuildPod):
            await self._terminating(pool, action.name, REBUILD_REASON)
            replacement = await self._create(pool, config, runtime, 1)
            report.rebuilt.append(action.name)
            report.created += replacement
            number = len(report.rebuilt)
            log.info(f"Deleted idle pod {action.name} for rebuild ({number})", pool_id=pool.pool_id)
            log.info(
                f"Created replacement pod {replacement[0]} with new config ({number})",
                pool_id=pool.pool_id,
            )
            return Outcome.done, action.name
        await self._terminating(pool, action.name, f"deleted: {action.message}")
        report.removed.append(action.name)
        log.info("idle pod deleted", pool_id=pool.pool_id, pod=action.name, reason=action.reason)
        return Outcome.done, action.name

    async def _drain_if_idle(self, pool: Pool, name: str, reason: str) -> bool:
        async with self._store.unit_of_work() as uow:
            row = await uow.pods.find(pool.pool_id, name)
            if row is None:
                return False  # never seen by the database: an agent may be about to register
            if row.state is PodState.failed:
                return all(s.state is SlotState.idle for s in row.slots)  # retired: slots freed
            return await uow.pods.drain_if_idle(row.id, reason=reason, now=self._clock())

    async def _terminating(self, pool: Pool, name: str, reason: str) -> None:
        """Deleted by slotpool: ``terminating`` until the runtime no longer lists it."""
        async with self._store.unit_of_work() as uow:
            row = await uow.pods.find(pool.pool_id, name)
            if row is not None and row.state is not PodState.failed:
                await uow.pods.set_state(
                    row.id, PodState.terminating, reason=reason, now=self._clock()
                )

    async def _create(
        self, pool: Pool, config: PoolConfig, runtime: PodRuntime, count: int
    ) -> list[str]:
        """Create ``count`` Pods (``CREATE_CONCURRENCY`` requests at a time), then record those
        created in one transaction, before this pass ends: the next pass counts them as coming.
        (If the process dies in between, the next pass adopts them from the runtime's list.)"""
        gate = asyncio.Semaphore(CREATE_CONCURRENCY)
        spec = agent_spec(config, self._pools.pod_context(pool))

        async def one() -> RuntimePod:
            async with gate:
                return await runtime.create_agent(spec)

        results = await asyncio.gather(*(one() for _ in range(count)), return_exceptions=True)
        created = [r for r in results if isinstance(r, RuntimePod)]
        errors = [r for r in results if isinstance(r, BaseException)]
        if created:
            await self._record_created(pool, config, created)
        if errors:
            if created:
                names = [p.name for p in created]
                log.warning("some pods not created", pool_id=pool.pool_id, created=names)
            raise errors[0]
        return [p.name for p in created]

    async def _record_created(
        self, pool: Pool, config: PoolConfig, created: list[RuntimePod]
    ) -> None:
        now = self._clock()
        async with self._store.unit_of_work() as uow:
            for pod in created:
                if await uow.pods.find(pool.pool_id, pod.name) is not None:
                    continue  # a local agent registered already
                await uow.pods.adopt(
                    pool_id=pool.pool_id,
                    name=pod.name,
                    slots=config.slots_per_pod,
                    config_hash=pod.config_hash,
                    state=state_from_runtime(None, phase=pod.phase, deleting=False),
                    phase=pod.phase,
                    node=pod.node,
                    reason="",
                    created_at=now,
                    now=now,
                )

    # -- record ------------------------------------------------------------------------------------

    def _new_holds(self, pool_id: str, decided: Plan) -> list[NewEvent]:
        """A hold is recorded when it starts (or its words change), not on every pass."""
        state = self._pool_state(pool_id)
        current = frozenset((h.reason.value, h.message) for h in decided.holds)
        new = [h for h in decided.holds if (h.reason.value, h.message) not in state.holds]
        state.holds = current
        return [
            NewEvent(
                action="hold",
                reason=h.reason.value,
                message=h.message,
                outcome=Outcome.held,
                inputs=decided.summary(),
            )
            for h in new
        ]

    async def _record(
        self,
        pool: Pool,
        observation: Observation,
        decided: Plan,
        events: list[NewEvent],
        *,
        backoff_moved: bool,
    ) -> None:
        why = _queue_reason(observation, decided)
        async with self._store.unit_of_work() as uow:
            if backoff_moved:
                await uow.pools.set_backoff(
                    pool.pool_id,
                    failures=decided.backoff.failures,
                    last_failure_at=decided.backoff.last_failure_at,
                )
            if events:
                await uow.events.add(pool.pool_id, events, now=self._clock())
                await uow.events.prune(pool.pool_id, keep=EVENTS_KEPT)
            if observation.queued:
                await uow.tasks.explain_queued(pool.pool_id, reason=why)


def _pod_observation(row: Pod, pod: RuntimePod) -> PodObservation:
    busy = sum(1 for s in row.slots if s.state is SlotState.busy)
    reserved = sum(1 for s in row.slots if s.state is SlotState.reserved)
    idle = len(row.slots) - busy - reserved
    idle_since = None
    if busy == 0 and reserved == 0:
        idle_since = max((s.since for s in row.slots), default=row.created_at)
    return PodObservation(
        name=row.name,
        state=row.state,
        config_hash=pod.config_hash if pod.config_hash is not None else row.config_hash,
        created_at=row.created_at,
        idle_since=idle_since,
        busy=busy,
        reserved=reserved,
        idle=idle,
        k8s_reason=_waiting_reason(row, pod),
        k8s_message=pod.message if row.state is PodState.pending else _NOT_REGISTERED,
    )


_NOT_REGISTERED = "the Pod runs, but its agent has not registered with the control plane"


def _waiting_reason(row: Pod, pod: RuntimePod) -> str | None:
    if row.state is PodState.pending:
        return pod.reason
    return "AgentNotRegistered" if row.state is PodState.starting else None


def _event(
    action: Action, decided: Plan, outcome: Outcome, suffix: str = "", pod: str | None = None
) -> NewEvent:
    name = getattr(action, "name", None)
    return NewEvent(
        action=action.kind,
        reason=action.reason.value,
        message=action.message + suffix,
        outcome=outcome,
        inputs=decided.summary(),
        pod=name if isinstance(name, str) else pod,
    )


def _queue_reason(observation: Observation, decided: Plan) -> str:
    """Why the pool's queued tasks wait, and until when if that is known."""
    freeze = observation.freeze
    if freeze.active:
        until = f" until {_utc(freeze.until)}" if freeze.until else ""
        if freeze.policy is FreezePolicy.no_new_tasks:
            return f"waiting: change freeze (no_new_tasks){until}; {freeze.reason()}"
        return f"waiting: {freeze.reason()}; no Pod is created{until}"
    for hold in decided.holds:
        if hold.reason is Reason.backoff:
            return f"waiting: {hold.message}" + (f" until {_utc(hold.until)}" if hold.until else "")
        if hold.reason is Reason.max_replicas:
            return f"waiting for a free slot: {hold.message}"
    return (
        "waiting for a free slot: Pods are starting"
        if decided.created
        or any(p.state in (PodState.pending, PodState.starting) for p in observation.pods)
        else "waiting for a free slot"
    )


def _utc(instant: datetime | None) -> str:
    return "" if instant is None else instant.strftime("%Y-%m-%d %H:%M UTC")


def _changed(row: Pod, state: PodState, pod: RuntimePod, reason: str) -> bool:
    """Whether the runtime reports something the record does not say yet (a pass writes only
    what changed: most passes write nothing for most pods)."""
    seen = (state, pod.phase, pod.node, reason or row.reason)
    return seen != (row.state, row.phase, row.node, row.reason)


def _vanished(row: Pod, listed_at: datetime) -> bool:
    """A recorded pod the runtime did not list. Static agents have no runtime pod, and a row
    newer than the list (an agent that registered meanwhile) cannot have been listed."""
    return row.state is not PodState.failed and row.phase is not None and row.created_at < listed_at
