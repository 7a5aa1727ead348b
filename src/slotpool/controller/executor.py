"""The executor stage of a pass: the plan's actions applied to the runtime and the books.

Pods are created with bounded concurrency, by the pass itself (``settle``: a pass a use case
asked for, which reports them) or handed over to ``creations`` (a worker's pass, which returns
at once; the next pass counts them as coming); idle ones are deleted or rebuilt. A Pod is
deleted only after ``drain_if_idle`` marked it ``draining`` in the transaction that saw all its
slots idle, so no task can be given to it any more: no path here deletes a Pod with a busy or
reserved slot, whatever the plan says. A runtime failure fails its action only (the others are
still applied); what each action did comes back as a value (``Applied``), in the plan's order.
"""

from __future__ import annotations

import asyncio

import structlog

from slotpool import metrics
from slotpool.clock import Clock
from slotpool.controller.creations import Batch, Creations
from slotpool.controller.record import action_event, creation_failed_reason
from slotpool.controller.types import Applied, Executed, PoolTarget
from slotpool.domain.agent_spec import agent_spec
from slotpool.domain.events import NewEvent, Outcome
from slotpool.domain.pods import PodEnd, SlotState
from slotpool.domain.scaling import (
    Action,
    CreatePods,
    DeletePod,
    DeleteStuckPod,
    Plan,
    RebuildPod,
    end_of,
)
from slotpool.runtime.base import RuntimePod
from slotpool.runtime.errors import RuntimeApiError
from slotpool.services.lifecycle import record_created
from slotpool.store.uow import Store

log = structlog.get_logger(__name__)
# A pass's creations are all started at once and paced by the runtime's rate limit (Kubernetes:
# its token bucket), so they go out as fast as the limit lets them whatever the API server's
# latency; this only bounds the requests in flight (and connections) for a very large pass.
CREATE_CONCURRENCY = 64
REBUILD_REASON = "configuration changed: replaced because all its slots were idle"


async def create_pod(target: PoolTarget) -> RuntimePod:
    """One Pod of the pool, as the one builder makes it (the preview shows the same)."""
    return await target.runtime.create_agent(agent_spec(target.config, target.context))


class Executor:
    def __init__(self, *, store: Store, clock: Clock) -> None:
        self._store = store
        self._clock = clock
        self.creations = Creations(
            store=store, clock=clock, create=create_pod, concurrency=CREATE_CONCURRENCY
        )

    async def apply(self, decided: Plan, target: PoolTarget, *, settle: bool = True) -> Executed:
        """The plan's actions in order; without ``settle`` its creations are handed over."""
        applied: list[Applied] = []
        for action in decided.actions:
            if isinstance(action, CreatePods) and not settle:
                applied.append(self._hand_over(action, decided, target))
                continue
            done = await self._one(action, target)
            applied.append(done)
            if done.rebuilt:
                _log_rebuilt(target.pool_id, done, number=len(Executed(tuple(applied)).rebuilt))
        return Executed(tuple(applied))

    def _hand_over(self, action: CreatePods, decided: Plan, target: PoolTarget) -> Applied:
        inputs = decided.summary()

        def event(created: list[str], error: str | None) -> NewEvent | None:
            if not created and error is None:
                return None  # refused before any request went out (no longer the leader)
            done = Applied(
                action=action,
                outcome=Outcome.done if error is None else Outcome.failed,
                pod=", ".join(created) or None,
                created=tuple(created),
                error=error,
            )
            return action_event(done, inputs)

        self.creations.start(Batch(target, action.count, event, creation_failed_reason))
        return Applied(action=action, outcome=Outcome.planned, handed_over=True)

    async def _one(self, action: Action, target: PoolTarget) -> Applied:
        try:
            return await self._apply(action, target)
        except RuntimeApiError as exc:
            log.warning("action failed", pool_id=target.pool_id, action=action.kind, error=str(exc))
            return Applied(action=action, outcome=Outcome.failed, error=str(exc))

    async def _apply(self, action: Action, target: PoolTarget) -> Applied:
        if isinstance(action, CreatePods):
            created = await self.create(target, action.count)
            log.info("pods created", pool_id=target.pool_id, pods=created, reason=action.reason)
            pods = ", ".join(created) or None
            return Applied(action=action, outcome=Outcome.done, pod=pods, created=tuple(created))
        if isinstance(action, DeleteStuckPod):
            return await self._delete_stuck(action, target)
        end = end_of(action.reason)
        if not await self._drain_if_idle(target, action.name, action.message, end):
            # A task took a slot between the observation and now: the Pod stays.
            return Applied(action=action, outcome=Outcome.held, pod=action.name)
        await target.runtime.delete_pod(target.namespace, action.name)
        if isinstance(action, RebuildPod):
            return await self._rebuild(action, target, end)
        return await self._deleted(action, target, end)

    async def _delete_stuck(self, action: DeleteStuckPod, target: PoolTarget) -> Applied:
        await target.runtime.delete_pod(target.namespace, action.name)
        end = end_of(action.reason)
        await self._terminating(target, action.name, f"deleted: {action.message}", end)
        log.warning("stuck pod deleted", pool_id=target.pool_id, pod=action.name)
        return Applied(action=action, outcome=Outcome.done, removed=(action.name,))

    async def _rebuild(self, action: RebuildPod, target: PoolTarget, end: PodEnd) -> Applied:
        await self._terminating(target, action.name, REBUILD_REASON, end)
        replacement = await self.create(target, 1)
        return Applied(
            action=action,
            outcome=Outcome.done,
            created=tuple(replacement),
            rebuilt=(action.name,),
        )

    async def _deleted(self, action: DeletePod, target: PoolTarget, end: PodEnd) -> Applied:
        await self._terminating(target, action.name, f"deleted: {action.message}", end)
        log.info("idle pod deleted", pool_id=target.pool_id, pod=action.name, reason=action.reason)
        return Applied(action=action, outcome=Outcome.done, removed=(action.name,))

    async def _drain_if_idle(self, target: PoolTarget, name: str, reason: str, end: PodEnd) -> bool:
        async with self._store.unit_of_work() as uow:
            row = await uow.pods.find(target.pool_id, name)
            if row is None:
                return False  # never seen by the database: an agent may be about to register
            if row.state.ended:
                return all(s.state is SlotState.idle for s in row.slots)  # retired: slots freed
            return await uow.pods.drain_if_idle(row.id, end, reason=reason, now=self._clock())

    async def _terminating(self, target: PoolTarget, name: str, reason: str, end: PodEnd) -> None:
        """Deleted by slotpool: ``terminating`` until the runtime no longer lists it, with why
        it goes (unless the record already says why, e.g. drained by an admin)."""
        async with self._store.unit_of_work() as uow:
            row = await uow.pods.find(target.pool_id, name)
            if row is not None:
                await uow.pods.terminating(row.id, end, reason=reason, now=self._clock())

    async def create(self, target: PoolTarget, count: int) -> list[str]:
        """Create ``count`` Pods (up to ``CREATE_CONCURRENCY`` requests at once), then record those
        created in one transaction, before this pass ends: the next pass counts them as coming.
        (If the process dies in between, the next pass adopts them from the runtime's list.)
        The first error is raised once the others were recorded."""
        gate = asyncio.Semaphore(CREATE_CONCURRENCY)

        async def one() -> RuntimePod:
            async with gate:
                return await create_pod(target)

        results = await asyncio.gather(*(one() for _ in range(count)), return_exceptions=True)
        created = [r for r in results if isinstance(r, RuntimePod)]
        errors = [r for r in results if isinstance(r, BaseException)]
        if created:
            await self._record_created(target, created)
            metrics.PODS_CREATED.labels(pool=target.pool.name).inc(len(created))
        if errors:
            if created:
                names = [p.name for p in created]
                log.warning("some pods not created", pool_id=target.pool_id, created=names)
            raise errors[0]
        return [p.name for p in created]

    async def _record_created(self, target: PoolTarget, created: list[RuntimePod]) -> None:
        now = self._clock()
        async with self._store.unit_of_work() as uow:
            for pod in created:
                # Known already if its agent registered first (it recorded the pod then).
                slots = target.config.slots_per_pod
                await record_created(uow, target.pool_id, pod, slots=slots, now=now)


def _log_rebuilt(pool_id: str, done: Applied, *, number: int) -> None:
    (old,), (new, *_) = done.rebuilt, done.created
    log.info(f"Deleted idle pod {old} for rebuild ({number})", pool_id=pool_id)
    log.info(f"Created replacement pod {new} with new config ({number})", pool_id=pool_id)
