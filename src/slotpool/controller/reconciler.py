"""One pass over a pool, as a pipeline of values.

A pass runs one at a time per pool (``PoolLocks``), pools in parallel, whenever the orchestration
asks (``orchestration.py``) or a use case needs one now (a config save, a token rotation,
``sync-deployment``):

1. **inventory** (``inventory.py``): the place for the pods made and the token Secret checked
   (on request and every ``SECRET_CHECK_SECONDS``); the runtime's pods compared with the books by
   the pure ``domain.inventory.classify`` and the result written: unknown pods with the pool's
   labels adopted, phase, Node and the runtime's reason recorded, pods that ended or vanished
   retired (their tasks become ``lost`` with the reason); then the observation of the pool;
2. **plan**: ``domain.scaling.plan(observation, now)`` (pure) turns it into actions and holds,
   each with a reason;
3. **execute** (``executor.py``): create Pods, delete or rebuild idle ones; what each action did
   comes back as a value (a worker's pass hands its creations over to ``creations.py`` and
   returns; the next passes count them as coming until the books show them);
4. **record** (``record.py``): every action and every new hold is a pool event (inputs, action,
   reason), queued tasks say why they wait, the back-off is kept.

The pass report is assembled from the stages' values at the end.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import replace
from datetime import datetime

from slotpool import metrics
from slotpool.clock import Clock
from slotpool.controller.creations import STOP_WAIT_SECONDS
from slotpool.controller.executor import Executor
from slotpool.controller.inventory import Observer
from slotpool.controller.record import (
    Record,
    Recorder,
    action_events,
    hold_events,
    record_of,
    runtime_failing_event,
)
from slotpool.controller.types import Executed, Holds, Inventory, PoolMemory, PoolTarget
from slotpool.domain.events import NewEvent
from slotpool.domain.pools import Pool
from slotpool.domain.scaling import Plan, plan
from slotpool.runtime.errors import RuntimeApiError
from slotpool.services.errors import Conflict
from slotpool.services.freeze import FreezeService
from slotpool.services.locks import PoolLocks
from slotpool.services.no_pods import waiting_reason
from slotpool.services.pools import PoolService
from slotpool.services.ports import RuntimeFailed, SyncReport
from slotpool.services.runtimes import PoolRuntimes
from slotpool.services.secret_tokens import SecretTokens
from slotpool.store.uow import Store

SECRET_CHECK_SECONDS = 30.0


class Reconciler:
    def __init__(
        self,
        *,
        store: Store,
        pools: PoolService,
        runtimes: PoolRuntimes,
        freeze: FreezeService,
        secrets: SecretTokens,
        locks: PoolLocks,
        clock: Clock,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._pools = pools
        self._runtimes = runtimes
        self._secrets = secrets
        self._locks = locks
        self._monotonic = monotonic
        self._observer = Observer(store=store, secrets=secrets, freeze=freeze, clock=clock)
        self._executor = Executor(store=store, clock=clock)
        self._recorder = Recorder(store=store, clock=clock)
        self._memory: dict[str, PoolMemory] = {}

    def wake_at(self, pool_id: str) -> datetime | None:
        """When the last plan asked to look at the pool again (a delay, a timeout, a freeze)."""
        memory = self._memory.get(pool_id)
        return None if memory is None else memory.wake_at

    def forget(self, pool_id: str) -> None:
        self._memory.pop(pool_id, None)
        self._executor.creations.forget(pool_id)

    async def settle(self, pool_id: str) -> None:
        """Returns once the creations the pool's passes handed over have ended."""
        await self._executor.creations.settle(pool_id)

    async def creations_at_most(self, pool_id: str, pending: int) -> None:
        """Returns once at most ``pending`` of the creations the pool's passes handed over are
        still waiting for the runtime's answer."""
        await self._executor.creations.at_most(pool_id, pending)

    async def stop(self, *, wait: float = STOP_WAIT_SECONDS) -> None:
        """The creations handed over awaited (those not done after ``wait`` seconds
        cancelled), and forgotten."""
        await self._executor.creations.stop(wait=wait)

    def desired_pods(self, pool_id: str) -> int | None:
        """How many Pods the pool's last plan wanted; None before this process planned it."""
        memory = self._memory.get(pool_id)
        return None if memory is None else memory.desired_pods

    def failing(self, pool_id: str) -> str | None:
        """Why the pool's last pass failed before it could decide (its runtime failed)."""
        memory = self._memory.get(pool_id)
        return None if memory is None else memory.failing

    async def run_pass(
        self, pool_id: str, *, check_secret: bool, settle: bool = True
    ) -> SyncReport:
        """One pass now; ``RuntimeFailed`` (with what was done) when the runtime failed a step.
        Without ``settle`` its creations are handed over, not awaited: the report does not
        name them, and their batch reports a failure (the pool's events, the queue's reason)."""
        async with self._locks.local(pool_id):
            if self._locks.spans_processes and not check_secret:
                began = time.perf_counter()
                looked = await self._look(pool_id)
                if looked is not None:  # a pass (one that went on under the lock counts once)
                    metrics.CONTROLLER_PASS.observe(time.perf_counter() - began)
                    return looked
            async with self._locks.shared(pool_id):
                pool = await self._pools.get(pool_id)  # the latest config, read under the lock
                metrics.pool_names.note(pool.pool_id, pool.name)
                with metrics.CONTROLLER_PASS.time():
                    target = self._target(pool)
                    report = await self._pass(target, check_secret=check_secret, settle=settle)
        if report.failures:
            raise RuntimeFailed("; ".join(report.failures), report)
        return report

    async def _look(self, pool_id: str) -> SyncReport | None:
        """The pass of a settled pool, reading only and without the database's lock (other
        processes pass their pools meanwhile): its report if the pass would write nothing and
        do nothing (its Pods as booked, nothing queued, in flight or due, no new hold); None
        otherwise, and the pass runs under the lock. Where several processes share the
        database this spares a settled pool's pass the lock's two round trips and its reads'
        transactions."""
        memory = self._memory.get(pool_id)
        if memory is None or memory.failing is not None:
            return None  # a first pass (the Secret, the namespace) or a failing runtime: act
        if memory.secret_due(self._monotonic(), SECRET_CHECK_SECONDS):
            return None
        pool = await self._pools.get(pool_id)
        if pool.rotating_from is not None:
            return None  # a rotation to finish
        target = self._target(pool)
        flight = self._executor.creations.flight(pool_id)
        try:
            inventory = await self._observer.look(
                target, secret="unchanged", backoff=memory.backoff, flight=flight
            )
        except RuntimeApiError:
            return None  # the pass under the lock meets it again and says so
        if inventory is None:
            return None
        decided = plan(inventory.observation, inventory.observed_at)
        held, holds = hold_events(decided, memory.holds)
        record = record_of(inventory.observation, decided, held, backoff=memory.backoff)
        if decided.actions or record.events or record.queue_reason or record.backoff:
            return None
        metrics.pool_names.note(pool.pool_id, pool.name)
        self._remember(pool_id, memory, decided, holds)
        return report_of(inventory, decided, Executed(()))

    def _target(self, pool: Pool) -> PoolTarget:
        runtime = self._runtimes.for_pool(pool)
        config = pool.effective_config()
        if config is None:
            raise Conflict(f"agent pool {pool.pool_id} has no configuration yet: PUT /k8s-config")
        return PoolTarget(pool, config, runtime, self._pools.pod_context(pool))

    async def _pass(self, target: PoolTarget, *, check_secret: bool, settle: bool) -> SyncReport:
        memory = self._memory.get(target.pool_id) or PoolMemory.first(target.pool)
        try:
            secret, memory = await self._prepare(target, memory, check_secret=check_secret)
            try:
                inventory = await self._observer.take(
                    target,
                    secret=secret,
                    backoff=memory.backoff,
                    flight=self._executor.creations.flight(target.pool_id),
                )
            except RuntimeApiError as exc:
                raise RuntimeFailed(str(exc), SyncReport(secret=secret)) from exc
        except RuntimeFailed as exc:
            await self._runtime_failing(target, str(exc))
            raise
        decided = plan(inventory.observation, inventory.observed_at)
        executed = await self._executor.apply(decided, target, settle=settle)
        holds = await self._record(target, inventory, decided, executed, memory)
        self._remember(target.pool_id, memory, decided, holds)
        return report_of(inventory, decided, executed)

    def _remember(self, pool_id: str, memory: PoolMemory, decided: Plan, holds: Holds) -> None:
        self._memory[pool_id] = replace(
            memory,
            backoff=decided.backoff,
            wake_at=decided.wake_at,
            holds=holds,
            failing=None,
            desired_pods=decided.desired_pods,
        )

    async def _runtime_failing(self, target: PoolTarget, error: str) -> None:
        """A pass the runtime failed before it could decide: the queued tasks say so, and the
        pool's events once, when the failing starts (not on every pass that fails)."""
        memory = self._memory.get(target.pool_id) or PoolMemory.first(target.pool)
        why = f"the {target.runtime.name} runtime fails ({error}); the controller tries again"
        events = () if memory.failing else (runtime_failing_event(why),)
        await self._recorder.write(target.pool_id, Record(events, waiting_reason(why), None))
        scale_decisions(target.pool.name, events)
        self._memory[target.pool_id] = replace(memory, failing=why)

    async def _prepare(
        self, target: PoolTarget, memory: PoolMemory, *, check_secret: bool
    ) -> tuple[str, PoolMemory]:
        """The Secret checked if asked or due; remembered at once, even if the pass fails."""
        now = self._monotonic()
        due = check_secret or memory.secret_due(now, SECRET_CHECK_SECONDS)
        try:
            secret = await self._observer.prepare(target, check_secret=due)
        except RuntimeApiError as exc:
            raise RuntimeFailed(str(exc), SyncReport()) from exc
        if due:
            memory = self._memory[target.pool_id] = replace(memory, secret_checked=now)
        return secret, memory

    async def _record(
        self,
        target: PoolTarget,
        inventory: Inventory,
        decided: Plan,
        executed: Executed,
        memory: PoolMemory,
    ) -> Holds:
        """The pass's events and the queue's reason written; returns the holds now recorded."""
        held, holds = hold_events(decided, memory.holds)
        decisions = [*action_events(decided, executed), *held]
        events = list(decisions)
        if not decided.actions:  # settled: a token rotation may be complete
            events += await self._secrets.finish_rotation(target.pool, inventory.observation)
        record = record_of(
            inventory.observation,
            decided,
            events,
            backoff=memory.backoff,
            creation_failed=executed.creation_error,
        )
        await self._recorder.write(target.pool_id, record)
        scale_decisions(target.pool.name, decisions)
        return holds


def scale_decisions(pool: str, events: Iterable[NewEvent]) -> None:
    """The decisions a pass recorded (actions and the holds that started), counted."""
    for event in events:
        metrics.SCALE_DECISIONS.labels(pool=pool, action=event.action, reason=event.reason).inc()


def report_of(inventory: Inventory, decided: Plan, executed: Executed) -> SyncReport:
    observation = inventory.observation
    return SyncReport(
        secret=inventory.secret,
        adopted=inventory.adopted,
        created=executed.created,
        rebuilt=executed.rebuilt,
        ended=inventory.ended,
        removed=executed.removed,
        kept_busy=[p.name for p in observation.pods if observation.outdated(p) and not p.all_idle],
        pending=list(inventory.classified.pending),
        frozen=observation.freeze.active,
        failures=executed.failures,
        decision=decided.summary(),
    )
