"""The replicas of one database, and which of them leads: the election and the leader's work.

Every replica runs an ``Election``: every ``SLOTPOOL_LEADER_RENEW_SECONDS`` it says it is alive
(its ``replicas`` row), renews its lease if it leads, tries to take it if nobody leads (or the
leader's lease ran out: ``SLOTPOOL_LEADER_LEASE_SECONDS``), and reads which Pod settings the
leader published. The leader runs the leader's work (the controller and the sweeper, handed in
by the application) in tasks that carry its ``Lease``, so their writes are fenced
(``domain.leadership``): once a renewal fails, or the lease runs out by this process's own clock
(a process paused past its lease), the work is stopped and nothing it still tries goes out.

A replica that stops (SIGTERM) first stops its leader's work, then gives the lease up, so
another replica is elected at its next renewal rather than when the lease would have run out.

On SQLite there is one server per database (its lock file), which leads from its first renewal:
it takes the lease over from whatever process held it before.

What an API call sets off (a sync, a rebuild after a configuration save, a token rotation, a
pool's deletion) still runs on the replica that got the call, unfenced: what keeps such a pass
from racing the leader's is the per-pool lock (``services/locks.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import os
import socket
import time
from collections.abc import Awaitable, Callable, Coroutine, Hashable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import structlog

from slotpool import __version__
from slotpool.domain.leadership import (
    CURRENT,
    LeaderRecord,
    Lease,
    PodSettings,
    Replica,
    renewal_margin,
)
from slotpool.domain.signals import Signal
from slotpool.services.pools import PoolService
from slotpool.settings import Settings
from slotpool.store.uow import Store, UnitOfWork

log = structlog.get_logger("slotpool.cluster")

LeaderWork = Callable[[], Sequence[Coroutine[Any, Any, None]]]
FirstPass = Callable[[], Awaitable[None]]
SEEN_LEASES = 3  # replicas not heard from for this many leases are left out of the view
FORGET_SECONDS = 24 * 3600.0  # and their rows deleted (by the leader) after this long


@dataclass(frozen=True)
class ReplicaView:
    replica: Replica
    leader: bool
    disagreements: list[str]


@dataclass(frozen=True)
class ClusterView:
    """What ``GET /api/v1/cluster`` says."""

    database: str
    lease_seconds: float
    self_id: str
    leader: LeaderRecord | None  # None while nobody leads
    replicas: list[ReplicaView]


class Election:
    def __init__(
        self,
        *,
        store: Store,
        settings: Settings,
        pools: PoolService,
        work: LeaderWork,
        first_pass: FirstPass | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        """``work``: the coroutines of the leader's work, made anew at each election;
        ``first_pass``: returns once that work has passed over every pool once."""
        self._store = store
        self._pools = pools
        self._work = work
        self._first_pass = first_pass
        self._monotonic = monotonic
        self.replica_id = settings.replica_id
        self.lease_seconds = settings.leader_lease_seconds
        self.renew_seconds = settings.leader_renew_seconds
        self._host = socket.gethostname()
        self._pid = os.getpid()
        self.lease: Lease | None = None
        self.stopping = False
        self._tasks: list[asyncio.Task[None]] = []
        self._loop: asyncio.Task[None] | None = None
        self._take_over = True  # the first election may take the lease from our own name
        self._warned: PodSettings | None = None
        self._given_up = asyncio.Event()  # set when the leader says it gave the lease up

    @property
    def leads(self) -> bool:
        return self.lease is not None and self.lease.valid

    @property
    def own_settings(self) -> PodSettings:
        return self._pools.own_pod_settings

    # -- the loop ------------------------------------------------------------------------------

    async def start(self) -> None:
        """One round now (the server leads at once if it can), then one every renewal."""
        await self._round_logged()
        self._loop = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._given_up.wait(), self._until_next())
            self._given_up.clear()
            await self._round_logged()

    def heard(self, key: Hashable) -> None:
        """The notifier's listener: the leader gave its lease up (here or on another replica):
        a replica that does not lead stands for election now."""
        if key == Signal.leadership() and self.lease is None:
            self._given_up.set()

    def _until_next(self) -> float:
        """The renewal interval, or less: a leader wakes when its lease runs out by its clock."""
        wait = self.renew_seconds
        if self.lease is not None:
            wait = min(wait, max(self.lease.deadline - self._monotonic(), 0.0) + 0.01)
        return wait

    async def _round_logged(self) -> None:
        try:
            await self.round()
        except Exception:  # the database may be away: the next round tries again
            log.exception("leader election round failed", replica_id=self.replica_id)
            if self.lease is not None and not self.lease.valid:
                await self._lose("its lease ran out while the database could not be reached")

    async def round(self) -> None:
        """Say this replica is alive; renew the lease (leading) or try to take it (not); use the
        leader's Pod settings."""
        if self.stopping:
            return
        if self.lease is not None and not self.lease.valid:
            await self._lose("its lease was not renewed in time (was this process paused?)")
        started = self._monotonic()
        term: int | None = None
        renewed = False
        async with self._store.unit_of_work() as uow:
            await self._heartbeat(uow, stopping=False)
            if self.lease is not None:
                expires = await uow.cluster.renew(
                    self.replica_id,
                    self.lease.term,
                    lease_seconds=self.lease_seconds,
                    settings=self.own_settings,
                )
                renewed = expires is not None
                if renewed:
                    await uow.cluster.forget_replicas(unseen_for=FORGET_SECONDS)
            else:
                term = await uow.cluster.acquire(
                    self.replica_id,
                    lease_seconds=self.lease_seconds,
                    settings=self.own_settings,
                    take_over=self._take_over,
                )
            leader = await uow.cluster.leader()
        self._take_over = False
        if self.lease is not None:
            if renewed:
                self.lease.renewed(started, self.lease_seconds)
            else:
                await self._lose("another replica was elected, or its lease ran out")
        elif term is not None:
            deadline = started + self.lease_seconds - renewal_margin(self.lease_seconds)
            self._lead(Lease(self.replica_id, term, deadline, monotonic=self._monotonic))
        self._agree(leader)

    async def _heartbeat(self, uow: UnitOfWork, *, stopping: bool) -> None:
        """This replica's row: alive now, and whether it is stopping."""
        await uow.cluster.heartbeat(
            self.replica_id,
            host=self._host,
            pid=self._pid,
            version=__version__,
            settings=self.own_settings,
            stopping=stopping,
        )

    # -- leading -------------------------------------------------------------------------------

    def _lead(self, lease: Lease) -> None:
        self.lease = lease
        log.info(f"became leader (term {lease.term})", replica_id=self.replica_id, term=lease.term)
        context = contextvars.copy_context()
        context.run(CURRENT.set, lease)  # the work's writes are fenced by this lease
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(work, context=context) for work in self._work()]
        if self._first_pass is not None:
            self._tasks.append(loop.create_task(self._record_first_pass(lease), context=context))

    async def _record_first_pass(self, lease: Lease) -> None:
        assert self._first_pass is not None
        await self._first_pass()
        async with self._store.unit_of_work() as uow:
            await uow.cluster.first_pass(lease.replica_id, lease.term)
        log.info("first pass over every pool done", term=lease.term)

    async def _lose(self, why: str) -> None:
        lease = self.lease
        if lease is None:
            return
        lease.lose(why)
        log.warning(
            f"lost leadership (term {lease.term}): {why}",
            replica_id=self.replica_id,
            term=lease.term,
        )
        await self._stop_work()
        self.lease = None

    async def _stop_work(self) -> None:
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        for task in tasks:
            try:
                await task
            except asyncio.CancelledError:
                pass
            except Exception:  # it failed before it was stopped: said, and it is stopped
                log.exception("the leader's work failed", replica_id=self.replica_id)

    # -- the hand-over -------------------------------------------------------------------------

    async def stop(self) -> None:
        """This replica stops: the leader's work first (awaited), then the lease given up (so
        another replica is elected at once), then its row marked stopping. Idempotent."""
        if self.stopping:
            return
        self.stopping = True
        if self._loop is not None:
            self._loop.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._loop
        lease = self.lease
        if lease is not None:
            lease.lose("stopping")
            await self._stop_work()
            self.lease = None
            try:
                async with self._store.unit_of_work() as uow:
                    await uow.cluster.release(self.replica_id, lease.term)
                    # The other replicas hear it (on PostgreSQL, through the signal channel)
                    # and stand for election at once, not at their next renewal.
                    uow.signal(Signal.leadership())
            except Exception:  # the lease runs out by itself
                log.exception("giving up leadership failed", replica_id=self.replica_id)
            log.info(
                f"gave up leadership (term {lease.term}): stopping",
                replica_id=self.replica_id,
                term=lease.term,
            )
        try:
            async with self._store.unit_of_work() as uow:
                await self._heartbeat(uow, stopping=True)
        except Exception:  # only the cluster view misses it
            log.exception("marking this replica stopping failed", replica_id=self.replica_id)

    # -- the Pod settings ----------------------------------------------------------------------

    def _agree(self, leader: LeaderRecord) -> None:
        """Build Pods with the leader's settings; say once (per leader's settings) where this
        replica's own differ. Nobody leading: the last ones known are kept."""
        published = leader.pod_settings if leader.leads is not None else None
        if published is None:
            return
        self._pools.use_pod_settings(published)
        differences = self.own_settings.differences(published)
        if differences and published != self._warned:
            self._warned = published
            log.error(
                "this replica's Pod settings differ from the leader's: it builds Pods with the "
                "leader's, fix its settings",
                replica_id=self.replica_id,
                leader=leader.replica_id,
                differences=differences,
            )

    # -- the view ------------------------------------------------------------------------------

    async def view(self) -> ClusterView:
        async with self._store.reading() as uow:
            leader = await uow.cluster.leader()
            replicas = await uow.cluster.replicas(seen_within=SEEN_LEASES * self.lease_seconds)
        if self._store.backend == "sqlite":  # one server: rows of earlier processes are history
            replicas = [r for r in replicas if r.replica_id == self.replica_id]
        leads = leader.leads
        published = leader.pod_settings if leads is not None else None
        return ClusterView(
            database=self._store.backend,
            lease_seconds=self.lease_seconds,
            self_id=self.replica_id,
            leader=leader if leads is not None else None,
            replicas=[
                ReplicaView(
                    replica=r,
                    leader=r.replica_id == leads,
                    disagreements=(
                        r.pod_settings.differences(published)
                        if published is not None and r.pod_settings is not None
                        else []
                    ),
                )
                for r in replicas
            ],
        )


def since(instant: datetime | None) -> str:
    return "-" if instant is None else instant.isoformat()
