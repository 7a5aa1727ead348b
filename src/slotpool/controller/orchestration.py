"""What runs in the background: a worker per pool, a watch per (runtime, namespace), the listing
of pools and the orphan sweep. One pass over a pool is the reconciler's (``reconciler.py``);
this module only decides when passes run and which loops exist.

Each loop is a function of one step that a test can call without waiting: ``run_once`` (a round
of the pool listing: orphan sweep when due, the pools read, workers and watches started or
stopped), ``pass_once`` (one pass of a pool's worker, and how long until the next), and
``watch_once`` (one watch until it ends). ``run_forever`` and the loops around the steps only
wait between them. Intervals are measured on ``monotonic``, which a test may move.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass

import structlog

from slotpool.clock import Clock
from slotpool.controller.reconciler import Reconciler
from slotpool.domain.leadership import NotLeader
from slotpool.domain.pools import Pool
from slotpool.domain.signals import Signal, Topic
from slotpool.runtime.base import PodRuntime, PodWatcher
from slotpool.runtime.errors import RuntimeApiError
from slotpool.services.errors import Conflict, NotFound
from slotpool.services.no_pods import NoPods
from slotpool.services.notify import EVERYTHING, Notifier
from slotpool.services.pools import PoolService
from slotpool.services.ports import RuntimeFailed
from slotpool.services.runtimes import PoolRuntimes

log = structlog.get_logger(__name__)
WATCH_RETRY_SECONDS = 1.0
WATCH_RETRY_MAX_SECONDS = 30.0
ORPHAN_SWEEP_SECONDS = 30.0
# The full list of pools is read this often (or every resync, if longer): it finds pools that
# another server process created and stops the workers of deleted ones. A pool this process
# creates or configures is poked and read alone at once, and each worker passes every resync.
LISTING_SECONDS = 30.0
PAGE = 1000
WatchKey = tuple[str, str]  # (pool type, namespace)


@dataclass(frozen=True)
class Coalesce:
    """How a worker gathers wake-ups into one pass: after a wake-up it waits until ``quiet``
    seconds pass without another, but never more than ``most`` seconds after the first. A lone
    wake-up costs ``quiet`` of latency; a storm (400 submissions, a watch replaying every Pod)
    costs a pass every ``most`` seconds while it lasts, not one per event."""

    quiet: float = 0.02
    most: float = 0.1
    # While more than ``pending`` of the creations the pool's passes handed over still wait for
    # the runtime (its rate limit paces them), the next pass waits too, at most ``creating``
    # seconds: the runtime has work until then, and a pass made when they are nearly answered
    # creates what an earlier one would have (it sees the same queue, and more of it). During
    # a burst, a pass per batch of creations rather than one every ``most`` seconds.
    pending: int = 8
    creating: float = 1.0


def _wait(event: asyncio.Event, seconds: float) -> Awaitable[bool]:
    """``event`` set, or ``seconds`` passed (``TimeoutError``)."""
    return asyncio.wait_for(event.wait(), seconds)


@dataclass(frozen=True)
class WatchEnd:
    """How one watch ended: how many changes it reported, and its error if it failed."""

    heard: int
    error: str | None = None


class Orchestration:
    def __init__(
        self,
        *,
        reconciler: Reconciler,
        pools: PoolService,
        runtimes: PoolRuntimes,
        notifier: Notifier,
        clock: Clock,
        no_pods: NoPods | None = None,
        monotonic: Callable[[], float] = time.monotonic,
        coalesce: Coalesce = Coalesce(),
    ) -> None:
        self._reconciler = reconciler
        self._coalesce = coalesce
        self._no_pods = no_pods
        self._pools = pools
        self._runtimes = runtimes
        self._clock = clock
        self._monotonic = monotonic
        self.workers: dict[str, asyncio.Task[None]] = {}
        self.watchers: dict[WatchKey, asyncio.Task[None]] = {}
        self._poked: dict[str, asyncio.Event] = {}
        self._known: set[str] = set()  # pools seen by the last listings
        self._new: set[str] = set()  # poked pools not seen yet: read at once, alone
        self._listing = asyncio.Event()
        self._next_listing = self._next_sweep = float("-inf")
        # Set once, in a run, every pool of the first full listing has been passed once (the
        # new leader's first action, ``/api/v1/cluster``'s ``first_pass_at``); cleared by stop.
        self.passed_all = asyncio.Event()
        self._awaiting: set[str] | None = None  # the pools of that listing not passed yet
        notifier.listen(self._on_wake)

    # -- wake-ups --------------------------------------------------------------------------------

    def poke(self, pool_id: str, *, reread: bool = False) -> None:
        """Something happened to the pool: its worker passes again now. A pool without a worker
        that was not seen yet (one just created), or any with ``reread`` (its configuration
        was saved: it may have become one to keep), is read at once and gets one if it needs
        it. (Pools seen and not kept, static ones, need nothing on their frequent wake-ups.)"""
        if pool_id in self.workers:
            self._poked.setdefault(pool_id, asyncio.Event()).set()
        elif reread or pool_id not in self._known:
            self._new.add(pool_id)
            self._listing.set()

    def _on_wake(self, key: Hashable) -> None:
        """A committed change signalled the pool (demand or capacity moved), or its
        configuration (created, configured: read it again, it may have become one to keep).
        ``EVERYTHING`` (signals may have been missed): every worker passes, the pools are
        listed again."""
        if key == EVERYTHING:
            for pool_id in self.workers:
                self.poke(pool_id)
            self._next_listing = float("-inf")
            self._listing.set()
        elif isinstance(key, Signal) and key.topic in (Topic.pool, Topic.pool_config):
            self.poke(key.key, reread=key.topic is Topic.pool_config)

    # -- the listing loop ------------------------------------------------------------------------

    async def run_forever(self, resync_seconds: float) -> None:
        """One worker per pool with pods to keep, passing every resync. The list of pools is
        read every ``LISTING_SECONDS`` (or resync, if longer); a poke for a pool not seen yet
        reads that pool alone at once. Where the runtime can watch its Pods (Kubernetes), one
        watch per namespace in use wakes the pool whose Pod changed, so a Pod that starts,
        ends or is deleted behind slotpool's back is handled now rather than at the next
        resync."""
        try:
            while True:
                wait = await self.run_once(resync_seconds)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._listing.wait(), wait)
        finally:
            await self.stop()

    async def run_once(self, resync_seconds: float) -> float:
        """One round: the orphan sweep if due; every pool read if the listing is due, else only
        the pools poked since; workers and watches started (and, after a full listing, those
        no longer needed stopped). Returns the seconds until the next listing is due."""
        if self._monotonic() >= self._next_sweep:
            self._next_sweep = self._monotonic() + ORPHAN_SWEEP_SECONDS
            await self._sweep_logged()
        self._listing.clear()  # a poke from here on is seen by the next round
        new, self._new = self._new, set()
        if self._monotonic() >= self._next_listing:
            self._next_listing = self._monotonic() + max(resync_seconds, LISTING_SECONDS)
            managed = await self._listed()
            if managed is not None:
                self._keep_watches(managed, prune=True)
                if self._awaiting is None:
                    self._awaiting = {p.pool_id for p in managed}
        else:  # woken for pools not seen yet: only those are read, not the list
            managed = await self._looked_up(new)
            self._keep_watches(managed, prune=False)
        for pool in managed or []:
            if pool.pool_id not in self.workers:
                self._start_worker(pool.pool_id, resync_seconds)
        self._passed(None)
        return max(self._next_listing - self._monotonic(), 0.0)

    def _passed(self, pool_id: str | None) -> None:
        """The pool's worker passed once (or stopped): once every pool of the run's first
        listing has, ``passed_all`` is set."""
        if self._awaiting is None:
            return
        self._awaiting.discard(pool_id or "")
        if not self._awaiting:
            self.passed_all.set()

    async def stop(self) -> None:
        """Every worker and watch cancelled and awaited, and what the run remembered forgotten:
        the next run (this server leads again) lists, sweeps and plans afresh."""
        for pool_id in self.workers:
            self._reconciler.forget(pool_id)
        self._next_listing = self._next_sweep = float("-inf")
        self._awaiting = None
        self.passed_all.clear()
        tasks = [*self.workers.values(), *self.watchers.values()]
        self.workers.clear()
        self.watchers.clear()
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self._reconciler.stop()  # the creations the passes handed over

    async def _listed(self) -> list[Pool] | None:
        """Every pool this server runs; the workers of the others are stopped. None: the
        listing failed (logged), nothing changes."""
        try:
            pools = await self._all_pools()
            managed = [p for p in pools if self._runtimes.can_run(p)]
            await self._say_why_no_pods(pools)
        except Exception:  # logged; the next round tries again
            log.exception("listing pools failed")
            return None
        for pool_id in set(self.workers) - {p.pool_id for p in managed}:
            self._stop_worker(pool_id)
        return managed

    async def _looked_up(self, pool_ids: set[str]) -> list[Pool]:
        """The pools among ``pool_ids`` this server runs, read one by one (a new pool, a Pod
        of a pool not seen yet)."""
        found: list[Pool] = []
        for pool_id in sorted(pool_ids - set(self.workers)):
            pool = await self._look_up(pool_id)
            if pool is not None and self._runtimes.can_run(pool):
                found.append(pool)
            elif pool is not None:
                await self._say_why_no_pods([pool])
        return found

    async def _say_why_no_pods(self, pools: list[Pool]) -> None:
        """The pools this server gives no Pods say why (an event when that starts, the reason
        on their queued tasks); the others drop what was said, if anything."""
        if self._no_pods is None:
            return
        for pool in pools:
            try:
                await self._no_pods.note(pool)
            except Exception:  # logged; the next listing says it again
                log.exception("saying why a pool gets no pods failed", pool_id=pool.pool_id)

    async def _look_up(self, pool_id: str) -> Pool | None:
        try:
            return await self._pools.get(pool_id)
        except NotFound:
            return None  # (an orphan's Pod: the orphan sweep deletes it)
        except Exception:  # logged; the next listing finds it
            log.exception("reading a new pool failed", pool_id=pool_id)
            return None
        finally:
            self._known.add(pool_id)

    async def _all_pools(self) -> list[Pool]:
        """Every pool, page by page; remembered as known (a poke for one needs no listing)."""
        found: list[Pool] = []
        while True:
            page, total = await self._pools.list(limit=PAGE, offset=len(found), name=None)
            found += page
            if not page or len(found) >= total:
                self._known.update(p.pool_id for p in found)
                return found

    # -- orphans ---------------------------------------------------------------------------------

    async def _sweep_logged(self) -> None:
        try:
            await self.sweep_orphans()
        except Exception:  # logged; the next sweep tries again
            log.exception("orphan sweep failed")

    async def sweep_orphans(self) -> list[str]:
        """Delete pods labelled for a pool that no longer exists (in the namespaces in use)."""
        pools = await self._all_pools()
        known = {p.pool_id for p in pools}
        removed: list[str] = []
        for pool_type, runtime in self._runtimes.items():
            namespaces = {self._runtimes.default_namespace}
            namespaces |= {
                namespace
                for pool in pools
                if pool.pool_type is pool_type
                and (namespace := self._runtimes.namespace(pool)) is not None
            }
            for namespace in sorted(namespaces):
                removed += await self._sweep_namespace(runtime, namespace, known)
        return removed

    async def _sweep_namespace(
        self, runtime: PodRuntime, namespace: str, known: set[str]
    ) -> list[str]:
        try:
            found = await runtime.all_pods(namespace)
        except RuntimeApiError as exc:
            if exc.status != 404:  # a namespace nobody made yet has no orphans
                log.warning("orphan sweep failed", namespace=namespace, error=str(exc))
            return []
        removed: list[str] = []
        for pod in found:
            if pod.pool_id not in known and not pod.deleting:
                await runtime.delete_pod(namespace, pod.name)
                removed.append(pod.name)
                log.warning("orphan pod deleted", pod=pod.name, pool_id=pod.pool_id)
        return removed

    # -- workers ---------------------------------------------------------------------------------

    def _start_worker(self, pool_id: str, resync_seconds: float) -> None:
        self._poked.setdefault(pool_id, asyncio.Event())
        self.workers[pool_id] = asyncio.create_task(self._worker(pool_id, resync_seconds))

    def _stop_worker(self, pool_id: str) -> None:
        self.workers.pop(pool_id).cancel()
        self._poked.pop(pool_id, None)
        self._reconciler.forget(pool_id)
        self._passed(pool_id)

    async def _worker(self, pool_id: str, resync_seconds: float) -> None:
        poked = self._poked.setdefault(pool_id, asyncio.Event())
        while True:
            poked.clear()
            timeout = await self.pass_once(pool_id, resync_seconds)
            self._passed(pool_id)
            if timeout is None:
                return  # the pool was deleted
            with contextlib.suppress(TimeoutError):
                await _wait(poked, timeout)
            await self._gathered(poked)
            await self._creations_answered(pool_id)

    async def _gathered(self, poked: asyncio.Event) -> None:
        """After a wake-up, the ones that follow it closely (``Coalesce``); at once after a
        timeout (nothing woke the worker)."""
        loop = asyncio.get_running_loop()
        latest = loop.time() + self._coalesce.most
        while poked.is_set() and (left := latest - loop.time()) > 0:
            poked.clear()
            with contextlib.suppress(TimeoutError):
                await _wait(poked, min(self._coalesce.quiet, left))

    async def _creations_answered(self, pool_id: str) -> None:
        """While the pool's creations in flight keep the runtime busy, no pass (``Coalesce``)."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(
                self._reconciler.creations_at_most(pool_id, self._coalesce.pending),
                self._coalesce.creating,
            )

    async def pass_once(self, pool_id: str, resync_seconds: float) -> float | None:
        """One pass of the pool's worker; the seconds until its next pass is due (at the latest
        the resync, sooner if the plan asked to be woken), None if the pool is gone."""
        try:
            await self._reconciler.run_pass(pool_id, check_secret=False, settle=False)
        except NotFound:
            return None
        except NotLeader as exc:  # the server stops leading: its leadership stops this worker
            log.info("pool pass refused", pool_id=pool_id, why=str(exc))
        except RuntimeFailed as exc:
            log.warning("pool pass failed", pool_id=pool_id, error=str(exc))
        except Conflict as exc:
            log.info("pool not kept", pool_id=pool_id, why=exc.message)
        except Exception:  # logged; the next pass tries again
            log.exception("pool pass failed", pool_id=pool_id)
        wake_at = self._reconciler.wake_at(pool_id)
        if wake_at is None:
            return resync_seconds
        return min(resync_seconds, max((wake_at - self._clock()).total_seconds(), 0.05))

    # -- watches ---------------------------------------------------------------------------------

    def _keep_watches(self, managed: list[Pool], *, prune: bool) -> None:
        """A watch for each (runtime, namespace) the pools use; with ``prune`` (``managed`` is
        every managed pool), none for any other."""
        wanted: dict[WatchKey, PodWatcher] = {}
        for pool in managed:
            runtime = self._runtimes.watcher(pool.pool_type)
            namespace = self._runtimes.namespace(pool)
            if runtime is not None and namespace is not None:
                wanted[(pool.pool_type.value, namespace)] = runtime
        for key, watcher in wanted.items():
            if key not in self.watchers:
                self.watchers[key] = asyncio.create_task(self._watch(watcher, key[1]))
        if prune:
            for key in set(self.watchers) - set(wanted):
                self.watchers.pop(key).cancel()

    async def _watch(self, runtime: PodWatcher, namespace: str) -> None:
        """Watch again after each end; after a failure, wait first (1 s, doubling to 30 s, back
        to 1 s once a watch reports a change). The resync goes on meanwhile, so a lost watch
        only makes reactions slower."""
        delay = WATCH_RETRY_SECONDS
        while True:
            end = await self.watch_once(runtime, namespace)
            if end.heard:
                delay = WATCH_RETRY_SECONDS
            if end.error is not None:
                log.warning("pod watch failed", namespace=namespace, error=end.error, retry=delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, WATCH_RETRY_MAX_SECONDS)

    async def watch_once(self, runtime: PodWatcher, namespace: str) -> WatchEnd:
        """Poke the pool of every Pod of ``namespace`` that changes, until the watch ends."""
        heard = 0
        try:
            async for pool_id in runtime.watch_pools(namespace):
                heard += 1
                self.poke(pool_id)
        except Exception as exc:  # reported; the loop watches again after a delay
            return WatchEnd(heard, str(exc))
        return WatchEnd(heard)
