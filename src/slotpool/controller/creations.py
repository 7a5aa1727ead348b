"""Pod creations a worker's pass hands over instead of waiting for them.

The runtime paces its requests (Kubernetes: its token bucket), so a pass that creates 40 Pods
would wait 0.8 s for them while the queue keeps growing behind it. A worker's pass therefore
starts its creations as one background batch and returns; the next pass counts what is still in
flight (``Flight``) as Pods that are coming, so nothing is created twice and ``max_replicas``
holds whatever the timing.

A pool's ``Flight`` knows two kinds of creation the books do not show yet:

* ``pending``: asked of the runtime, no answer yet (its name is not known: the API server
  makes it);
* ``landed``: created, its name known, until a pass finds it in the books.

A pass reads the books, then ``Flight.creating(booked)`` (nothing awaited in between), and leaves
out of the runtime's list the Pods it must not adopt: a landed one not booked yet (its batch
records it), and, while a creation is pending, every Pod the books do not know (the runtime may
list a Pod before its creation answered). Every creation is then counted once: in flight, or as
a Pod of the books and the list.

A batch ends by recording the Pods it created in one transaction, with the pool event of its
``create_pods`` action (done, or failed with the runtime's error, the queue then saying so), and
signals the pool so its worker passes again. If the pool is gone by then, the Pods are deleted.
``settle`` waits for a pool's batches (a pool being deleted: none of its Pods may land after its
Pods were listed for deletion); ``stop`` waits for all of them, then cancels what is left.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass, field

import structlog

from slotpool import metrics
from slotpool.clock import Clock
from slotpool.controller.types import PoolTarget
from slotpool.domain.events import NewEvent
from slotpool.domain.signals import Signal
from slotpool.runtime.base import RuntimePod
from slotpool.runtime.errors import RuntimeApiError
from slotpool.services.lifecycle import record_created
from slotpool.store.uow import Store

log = structlog.get_logger(__name__)
STOP_WAIT_SECONDS = 10.0


@dataclass
class Flight:
    """A pool's creations in flight (see the module's description)."""

    pending: int = 0
    landed: set[str] = field(default_factory=set)
    batches: set[asyncio.Task[None]] = field(default_factory=set)
    answered: asyncio.Event = field(default_factory=asyncio.Event)  # set as ``pending`` drops

    def creating(self, booked: Collection[str]) -> int:
        """How many creations the books do not show yet; forgets the landed Pods they show."""
        self.landed -= set(booked)
        return self.pending + len(self.landed)

    def hides(self, name: str, booked: Collection[str]) -> bool:
        """Whether a listed Pod the books do not know is left out of this pass (not adopted)."""
        return name not in booked and (self.pending > 0 or name in self.landed)


@dataclass(frozen=True)
class Batch:
    """What one pass handed over: ``count`` Pods for ``target``, and the event to write when
    they are created (``event(created, error)``: ``None`` writes none)."""

    target: PoolTarget
    count: int
    event: Callable[[list[str], str | None], NewEvent | None]
    queue_reason: Callable[[str], str]


class Creations:
    """Every pool's ``Flight`` and the batches running."""

    def __init__(
        self,
        *,
        store: Store,
        clock: Clock,
        create: Callable[[PoolTarget], Awaitable[RuntimePod]],
        concurrency: int,
    ) -> None:
        self._store = store
        self._clock = clock
        self._create = create
        self._concurrency = concurrency
        self._flights: dict[str, Flight] = {}
        self._running: set[asyncio.Task[None]] = set()

    def flight(self, pool_id: str) -> Flight:
        return self._flights.setdefault(pool_id, Flight())

    def forget(self, pool_id: str) -> None:
        """The pool is no longer this process's to pass: its batches run to their end (and
        delete their Pods if the pool is gone), but no pass counts them any more."""
        self._flights.pop(pool_id, None)

    def start(self, batch: Batch) -> None:
        flight = self.flight(batch.target.pool_id)
        flight.pending += batch.count
        task = asyncio.create_task(self._run(batch, flight))
        for running in (flight.batches, self._running):
            running.add(task)
            task.add_done_callback(running.discard)

    async def at_most(self, pool_id: str, pending: int) -> None:
        """Returns once at most ``pending`` of the pool's creations wait for their answer."""
        flight = self._flights.get(pool_id)
        while flight is not None and flight.pending > pending:
            flight.answered.clear()
            await flight.answered.wait()
            flight = self._flights.get(pool_id)  # (forgotten meanwhile: nothing to wait for)

    async def settle(self, pool_id: str) -> None:
        """Returns once the pool's batches have ended."""
        flight = self._flights.get(pool_id)
        while flight is not None and flight.batches:
            await asyncio.wait(set(flight.batches))

    async def stop(self, *, wait: float = STOP_WAIT_SECONDS) -> None:
        """Every batch awaited (its Pods recorded), those not done after ``wait`` seconds
        cancelled (a Pod they created unrecorded is adopted by the next pass)."""
        tasks = set(self._running)
        if tasks:
            _done, late = await asyncio.wait(tasks, timeout=wait)
            for task in late:
                task.cancel()
            for task in late:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._flights.clear()

    async def _run(self, batch: Batch, flight: Flight) -> None:
        gate = asyncio.Semaphore(self._concurrency)

        async def one() -> RuntimePod:
            async with gate:
                try:
                    pod = await self._create(batch.target)
                finally:
                    flight.pending -= 1
                    flight.answered.set()
                flight.landed.add(pod.name)
                return pod

        results = await asyncio.gather(*(one() for _ in range(batch.count)), return_exceptions=True)
        created = [r for r in results if isinstance(r, RuntimePod)]
        errors = [r for r in results if isinstance(r, BaseException)]
        if any(isinstance(e, asyncio.CancelledError) for e in errors):
            raise asyncio.CancelledError
        failed = [e for e in errors if isinstance(e, RuntimeApiError)]
        error = str(failed[0]) if failed else None  # reported, as a pass reports it
        if len(failed) < len(errors):  # e.g. no longer the leader: logged only
            refused = next(e for e in errors if not isinstance(e, RuntimeApiError))
            log.warning("pod creation refused", pool_id=batch.target.pool_id, error=str(refused))
        try:
            await self._record(batch, created, error)
        except Exception:
            # The next pass adopts them from the runtime's list.
            flight.landed -= {p.name for p in created}
            log.exception("recording created pods failed", pool_id=batch.target.pool_id)

    async def _record(self, batch: Batch, created: list[RuntimePod], error: str | None) -> None:
        target = batch.target
        names = [p.name for p in created]
        now = self._clock()
        async with self._store.unit_of_work() as uow:
            if await uow.pools.get(target.pool_id) is None:
                gone = True
            else:
                gone = False
                slots = target.config.slots_per_pod
                for pod in created:
                    await record_created(uow, target.pool_id, pod, slots=slots, now=now)
                event = batch.event(names, error)
                if event is not None:
                    await uow.events.add(target.pool_id, [event], now=now)
                    metrics.SCALE_DECISIONS.labels(
                        pool=target.pool.name, action=event.action, reason=event.reason
                    ).inc()
                if error is not None:
                    await uow.tasks.explain_queued(target.pool_id, reason=batch.queue_reason(error))
                uow.signal(Signal.pool(target.pool_id))
        if gone:
            await self._delete(target, names)
            return
        if created:
            metrics.PODS_CREATED.labels(pool=target.pool.name).inc(len(created))
        if error is None:
            log.info("pods created", pool_id=target.pool_id, pods=names)
        else:
            log.warning("pods not created", pool_id=target.pool_id, created=names, error=error)

    async def _delete(self, target: PoolTarget, names: list[str]) -> None:
        """The pool was deleted while its Pods were being created: they go too."""
        for name in names:
            try:
                await target.runtime.delete_pod(target.namespace, name)
            except Exception:  # the orphan sweep deletes it later
                log.exception("deleting a pod of a deleted pool failed", pod=name)
        if names:
            log.warning("pods of a deleted pool deleted", pool_id=target.pool_id, pods=names)
