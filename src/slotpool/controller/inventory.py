"""The inventory stage of a pass: what the runtime and the books say about a pool, as one value.

It reads (the runtime's list of the pool's pods, the recorded pods), lets the pure
``domain.inventory.classify`` decide what follows from the two, writes that (in one transaction;
then the runtime's copies of ended pods go), and reads back what the decision needs: the live
pods with their slots, the queue, the freeze. It decides nothing itself.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import structlog

from slotpool import metrics
from slotpool.clock import Clock
from slotpool.controller.creations import Flight
from slotpool.controller.types import Inventory, PoolTarget
from slotpool.domain.agent_identity import kept_uid
from slotpool.domain.inventory import (
    Adopt,
    Cause,
    Change,
    Classified,
    DeleteEnded,
    Forget,
    Listed,
    Retire,
    Update,
    classify,
)
from slotpool.domain.pods import Pod, PodState, SlotState
from slotpool.domain.scaling import Backoff, Observation, PodObservation
from slotpool.runtime.base import RuntimePod
from slotpool.services.freeze import FreezeService
from slotpool.services.lifecycle import retire_pod
from slotpool.services.secret_tokens import SecretTokens
from slotpool.store.uow import Store, UnitOfWork

log = structlog.get_logger(__name__)
NOT_REGISTERED = "the Pod runs, but its agent has not registered with the control plane"


class Observer:
    def __init__(
        self,
        *,
        store: Store,
        secrets: SecretTokens,
        freeze: FreezeService,
        clock: Clock,
    ) -> None:
        self._store = store
        self._secrets = secrets
        self._freeze = freeze
        self._clock = clock

    async def prepare(self, target: PoolTarget, *, check_secret: bool) -> str:
        """The place for the pool's pods made, and, when asked, the token Secret checked (a new
        token minted if it holds none that authenticates). Returns what became of the Secret."""
        await target.runtime.prepare(target.namespace)
        if not check_secret:
            return "unchanged"
        return await self._secrets.ensure(target.pool, target.runtime, target.namespace)

    async def take(
        self, target: PoolTarget, *, secret: str, backoff: Backoff, flight: Flight
    ) -> Inventory:
        """The runtime's pods into the books, then the observation the decision takes, in one
        unit of work. A recorded Pod the runtime's answer lacks is only taken for gone once the
        runtime itself (not a cache of it) says so. The pool's creations in ``flight`` are
        counted as coming, and the Pods they may have made are not adopted (``creations``)."""
        fresh = False
        while True:
            listed_at = self._clock()
            listing = await target.runtime.pods(target.namespace, target.pool_id, fresh=fresh)
            booked = await self._book(target, listing, listed_at, confirmed=fresh, flight=flight)
            if booked is not None:
                break
            fresh = True
        for change in booked[0].of_kind(DeleteEnded):  # its record stays; the runtime's goes
            await target.runtime.delete_pod(target.namespace, change.name)
        return self._inventory(target, secret, booked, backoff=backoff)

    async def look(
        self, target: PoolTarget, *, secret: str, backoff: Backoff, flight: Flight
    ) -> Inventory | None:
        """``take`` for a pool that may be settled, reading only (``Store.reading``): the
        inventory if the runtime's (cached) list and the books agree and nothing is queued;
        None if anything would be written or done, which is then ``take``'s to do."""
        listed_at = self._clock()
        listing = await target.runtime.pods(target.namespace, target.pool_id, fresh=False)
        async with self._store.reading() as uow:
            books = await uow.pods.of_pool(target.pool_id)
            classified, kept, creating = _compare(target, books, listing, listed_at, flight)
            if classified.changes or creating:
                return None
            queued = await uow.tasks.count_queued(target.pool_id)
        if queued:
            return None
        booked = (classified, books, queued, kept, creating)
        return self._inventory(target, secret, booked, backoff=backoff)

    def _inventory(
        self, target: PoolTarget, secret: str, booked: Booked, *, backoff: Backoff
    ) -> Inventory:
        classified, rows, queued, seen, creating = booked
        now = self._clock()
        alive = set(classified.alive)
        live = [pod for pod in seen if pod.name in alive]
        observation = self._observe(
            target, rows, live, queued, backoff=backoff, now=now, creating=creating
        )
        return Inventory(secret, classified, observation, now)

    async def _book(
        self,
        target: PoolTarget,
        seen: Sequence[RuntimePod],
        listed_at: datetime,
        *,
        confirmed: bool,
        flight: Flight,
    ) -> Booked | None:
        """The comparison written, the pool's rows as they are then, its queue, the listed Pods
        it took and the creations in flight; None (nothing written) if a Pod would be retired as
        vanished on a listing not ``confirmed``."""
        async with self._store.unit_of_work() as uow:
            books = await uow.pods.of_pool(target.pool_id)
            classified, kept, creating = _compare(target, books, seen, listed_at, flight)
            if not confirmed and any(r.cause is Cause.vanished for r in classified.of_kind(Retire)):
                return None
            for change in classified.changes:
                await self._write(uow, target, change, now=listed_at)
            if classified.changes:
                books = await uow.pods.of_pool(target.pool_id)
            queued = await uow.tasks.count_queued(target.pool_id)
            return classified, books, queued, kept, creating

    async def _write(
        self, uow: UnitOfWork, target: PoolTarget, change: Change, *, now: datetime
    ) -> None:
        if isinstance(change, Adopt):
            await _adopt(uow, target, change, now=now)
        elif isinstance(change, Update):
            _started(uow, change, now=now)
            await uow.pods.observed(
                change.pod.id,
                state=change.state,
                phase=change.phase,
                node=change.node,
                reason=change.reason,
                now=now,
            )
        elif isinstance(change, Retire):
            await self._retire(uow, change, now=now)
        elif isinstance(change, Forget):
            await uow.pods.forget(change.pod_ids)

    async def _retire(self, uow: UnitOfWork, change: Retire, *, now: datetime) -> None:
        pod = change.pod
        await retire_pod(uow, pod, change.end, reason=change.reason, now=now)
        if change.cause is Cause.ended:
            log.warning("pod ended", pool_id=pod.pool_id, pod=pod.name, reason=change.reason)
        elif change.cause is Cause.vanished:
            log.warning("pod vanished", pool_id=pod.pool_id, pod=pod.name)

    def _observe(
        self,
        target: PoolTarget,
        books: Sequence[Pod],
        live: Sequence[RuntimePod],
        queued: int,
        *,
        backoff: Backoff,
        now: datetime,
        creating: int,
    ) -> Observation:
        rows = {p.name: p for p in books}
        pool = target.pool
        return Observation(
            pool_id=pool.pool_id,
            config=target.config,
            config_hash=target.config_hash,
            freeze=self._freeze.state(pool, now),
            queued=queued,
            pods=tuple(pod_observation(rows[p.name], p) for p in live if p.name in rows),
            backoff=backoff,
            next_freeze_boundary=self._freeze.next_boundary(pool, now),
            creating=creating,
        )


# What a pass booked: the comparison, the pool's rows, its queue, the listed Pods it took and
# the creations in flight.
Booked = tuple[Classified, list[Pod], int, list[RuntimePod], int]


def _compare(
    target: PoolTarget,
    books: Sequence[Pod],
    seen: Sequence[RuntimePod],
    listed_at: datetime,
    flight: Flight,
) -> tuple[Classified, list[RuntimePod], int]:
    """The books against the listing (the Pods creations in ``flight`` may have made left
    out), the listed Pods taken, and how many creations the books do not show yet. Called
    right after the books were read: nothing is awaited in between."""
    names = {p.name for p in books}
    creating = flight.creating(names)
    kept = [pod for pod in seen if not flight.hides(pod.name, names)]
    classified = classify(
        books, [listed(pod) for pod in kept], runtime=target.runtime.name, listed_at=listed_at
    )
    return classified, kept, creating


def listed(pod: RuntimePod) -> Listed:
    """The runtime's pod as the domain's comparison takes it."""
    return Listed(
        name=pod.name,
        phase=pod.phase,
        node=pod.node,
        config_hash=pod.config_hash,
        created_at=pod.created_at,
        deleting=pod.deleting,
        ended=pod.ended,
        why=pod.why(),
        reason=pod.reason,
        uid=pod.uid,
    )


async def _adopt(uow: UnitOfWork, target: PoolTarget, change: Adopt, *, now: datetime) -> None:
    await uow.pods.adopt(
        pool_id=target.pool_id,
        name=change.name,
        slots=target.config.slots_per_pod,
        config_hash=change.config_hash,
        state=change.state,
        phase=change.phase,
        node=change.node,
        reason=change.reason,
        created_at=change.created_at,
        uid_digest=kept_uid(change.uid),
        now=now,
    )


def _started(uow: UnitOfWork, change: Update, *, now: datetime) -> None:
    """The start-up phases the Pod reached since the last pass (once committed)."""
    row = change.pod
    before = metrics.PodProgress(row.phase, row.node)
    reached = metrics.startup_phases_reached(before, metrics.PodProgress(change.phase, change.node))
    if reached and not row.state.ended:
        uow.after_commit(lambda: metrics.pod_started(row.pool_id, row.created_at, reached, now=now))


def pod_observation(row: Pod, pod: RuntimePod) -> PodObservation:
    """A live pod as the decision sees it: its record's slots, the runtime's hash and reason."""
    busy = sum(1 for s in row.slots if s.state is SlotState.busy)
    reserved = sum(1 for s in row.slots if s.state is SlotState.reserved)
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
        idle=len(row.slots) - busy - reserved,
        k8s_reason=_waiting_reason(row, pod),
        k8s_message=pod.message if row.state is PodState.pending else NOT_REGISTERED,
        ready_at=row.registered_at,
    )


def _waiting_reason(row: Pod, pod: RuntimePod) -> str | None:
    if row.state is PodState.pending:
        return pod.reason
    return "AgentNotRegistered" if row.state is PodState.starting else None
