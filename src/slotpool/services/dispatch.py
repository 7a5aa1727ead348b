"""The dispatcher: queued tasks into idle slots of ready pods, by the domain's placement rule.

One pass per pool at a time in this process (a lock per pool), and on PostgreSQL one batch per
pool at a time across processes (``PodRepository.dispatch_turn``: without it two replicas' batches
could lock a pool's pods and tasks in opposite orders and deadlock); the store's conditional
UPDATEs still decide (a slot is taken only while idle and its Pod ``ready``), and a lost race, or
a transaction the database aborted, rolls the batch back and tries again.

Only a submission and an approval queue a task; both signal ``queued`` for the pool, and in the
process that made them both call ``dispatch`` once committed. So a pass that found the queue
empty stays right until the pool's next ``queued`` signal or ``dispatch`` call: ``fill`` (room
came free: a step's result, an agent's claim) skips the queue probe until then. Each of them
bumps the pool's generation (a ``dispatch`` call before it waits for the lock), and a pass
records an empty queue only for the generation it started under, so a task queued while a pass
runs is never forgotten.

On PostgreSQL, several server processes share the database: a task queued through another one
reaches this one as its ``queued`` signal over the store's channel (``heard``), so the shortcut
holds across processes too. A pass's own commit signals no ``queued``: it does not undo the
shortcut it has just earned. Were signals missed (the channel reconnected), ``EVERYTHING`` forgets
every empty queue; a signal lost for good (a process that died between its commit and its
notification) is made up for by the sweeper, which dispatches every pool with queued tasks.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Hashable
from dataclasses import dataclass, replace
from datetime import datetime

import structlog

from slotpool import metrics
from slotpool.clock import Clock
from slotpool.domain.freeze import FreezePolicy
from slotpool.domain.pods import PodCapacity, place
from slotpool.domain.pools import Pool
from slotpool.domain.signals import Signal, Topic
from slotpool.domain.tasks import Task, TaskStatus
from slotpool.services.freeze import FreezeService
from slotpool.services.notify import EVERYTHING
from slotpool.services.pools import PoolService
from slotpool.store.errors import TransactionAborted
from slotpool.store.uow import Store

log = structlog.get_logger(__name__)
BATCH = 100
ATTEMPTS = 5


class _LostRace(Exception):
    """Another dispatcher took a slot or a task first."""


@dataclass(frozen=True)
class Start:
    """A queued task this dispatcher started: where and when (what ``TaskRepository.start``
    wrote), so its submitter can answer without reading the task back."""

    task_id: str
    pod_id: int
    pod_name: str
    slot: int
    at: datetime

    def of(self, task: Task) -> Task:
        """``task`` (as it was queued) as this start left it."""
        return replace(
            task,
            status=TaskStatus.running,
            pod_id=self.pod_id,
            pod_name=self.pod_name,
            slot_index=self.slot,
            started_at=task.started_at or self.at,
            step_started_at=None,
            reason="",
            updated_at=self.at,
        )


def _use(capacities: list[PodCapacity], pod_id: int, slot: int) -> None:
    for i, pod in enumerate(capacities):
        if pod.pod_id == pod_id:
            idle = tuple(s for s in pod.idle_slots if s != slot)
            capacities[i] = replace(pod, idle_slots=idle, used_slots=pod.used_slots + 1)


class Dispatcher:
    def __init__(
        self,
        store: Store,
        pools: PoolService,
        clock: Clock,
        freeze: FreezeService | None = None,
    ) -> None:
        self._store = store
        self._pools = pools
        self._freeze = freeze
        self._clock = clock
        self._locks: defaultdict[str, asyncio.Lock] = defaultdict(asyncio.Lock)
        self._waiting: set[str] = set()  # pools with a dispatch waiting for the lock
        self._generation: defaultdict[str, int] = defaultdict(int)  # dispatch calls per pool
        self._drained: dict[str, int] = {}  # pool: the generation a pass found its queue empty in

    def may_have_queued(self, pool_id: str) -> bool:
        """False only if a pass found the pool's queue empty and nothing was queued since (as
        far as this process has heard: see the module's docstring)."""
        return self._drained.get(pool_id) != self._generation[pool_id]

    def heard(self, key: Hashable) -> None:
        """The notifier's listener: a task was queued in a pool (here or in another process),
        or signals may have been missed (``EVERYTHING``)."""
        if key == EVERYTHING:
            self._drained.clear()
        elif isinstance(key, Signal) and key.topic is Topic.queued:
            self._generation[key.key] += 1

    async def fill(self, pool_id: str) -> int:
        """Room came free in the pool: dispatch, unless nothing can be queued."""
        if not self.may_have_queued(pool_id):
            return 0
        return await self.dispatch(pool_id)

    async def dispatch(self, pool_id: str) -> int:
        """Assign what can be assigned now; returns how many tasks were started."""
        return len(await self.start_queued(pool_id))

    async def settle(self, pool_id: str) -> None:
        """Dispatch the pool, and return once a pass that began after this call has ended: this
        call's own, or the one already waiting for the pool's lock (locks are fair: waiting
        behind it, this call gets the lock once it is done)."""
        waiting = pool_id in self._waiting
        await self.start_queued(pool_id)
        if waiting:
            async with self._locks[pool_id]:
                pass

    async def start_queued(self, pool_id: str) -> list[Start]:
        """Assign what can be assigned now; returns the starts this call made."""
        started: list[Start] = []
        self._generation[pool_id] += 1
        if pool_id in self._waiting:
            # One dispatch already waits for the lock: it starts after this call's change was
            # committed, so it sees it. A burst of submissions costs one pass, not one each.
            return started
        self._waiting.add(pool_id)
        try:
            await self._locks[pool_id].acquire()
        finally:
            # Also when cancelled while waiting (a request whose client went away): a pool
            # left marked as waiting would never be dispatched again in this process.
            self._waiting.discard(pool_id)
        try:
            for _ in range(ATTEMPTS):
                try:
                    batch, more = await self._one_batch(pool_id)
                except (_LostRace, TransactionAborted):
                    continue
                started += batch
                if not more:
                    break
        finally:
            self._locks[pool_id].release()
        return started

    async def _one_batch(self, pool_id: str) -> tuple[list[Start], bool]:
        """Returns the starts made, and whether work and room may both remain."""
        generation = self._generation[pool_id]
        async with self._store.unit_of_work() as uow:
            await uow.pods.dispatch_turn(pool_id)  # other processes' dispatchers take turns
            ready = await uow.pods.ready_slots(pool_id)
            if not any(pod.capacity.idle_slots for pod in ready):
                return [], False  # no room: the controller adds Pods, their agents come back
            queued = await uow.tasks.queued(pool_id, limit=BATCH)
            if not queued:
                self._drained[pool_id] = generation
            pool = await uow.pools.read(pool_id) if queued else None
            if not queued or pool is None or self._change_freeze(pool):
                return [], False
            # Read after the slots: a slot seen idle was freed before this instant, so a task's
            # start is never stamped before the end of the task that held the slot before it.
            now = self._clock()
            names = {pod.capacity.pod_id: pod.name for pod in ready}
            capacities = [pod.capacity for pod in ready]
            current = self._pools.config_hash(pool)
            given: list[Start] = []
            waited: list[float | None] = []
            uow.after_commit(lambda: _started(pool, waited))
            for task_id, since in queued:
                spot = place(capacities, current_hash=current)
                if spot is None:
                    return given, False
                pod_id, slot = spot
                if not await uow.pods.take_slot(pod_id, slot, task_id=task_id, now=now):
                    raise _LostRace
                start = Start(task_id, pod_id, names[pod_id], slot, now)
                if not await uow.tasks.start(
                    task_id, pod_id=pod_id, pod_name=start.pod_name, slot=slot, now=now
                ):
                    raise _LostRace
                _use(capacities, pod_id, slot)
                # Once committed: the agent's waiting claim answers, the task's followers see
                # it run, the pool's controller counts the slot as used.
                uow.signal(Signal.pod(pod_id), Signal.task(task_id), Signal.pool(pool_id))
                given.append(start)
                waited.append(metrics.seconds_between(since, now))
            if len(queued) < BATCH:  # the whole queue was placed: empty once committed
                uow.after_commit(lambda: self._drained.__setitem__(pool_id, generation))
            return given, len(queued) == BATCH

    def _change_freeze(self, pool: Pool) -> bool:
        """A ``no_new_tasks`` window in force: queued tasks wait (the controller says why)."""
        if self._freeze is None:
            return False
        state = self._freeze.state(pool, self._clock())
        return state.active and state.policy is FreezePolicy.no_new_tasks


def _started(pool: Pool, waited: list[float | None]) -> None:
    """Tasks started: how long each waited in the queue."""
    metrics.pool_names.note(pool.pool_id, pool.name)
    for seconds in waited:
        metrics.observe(metrics.TASK_WAIT, seconds, pool=pool.name)
