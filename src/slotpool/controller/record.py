"""The record stage of a pass: what was decided and done goes into the books.

Every action is a pool event with the decision's inputs and its reason, and so is every hold
when it starts (or its words change), not on every pass; queued tasks say why they wait, and
until when if that is known; the creation back-off is written when it moved, so a restarted
server resumes it. The events and the queue's reason are made by pure functions here; one
transaction writes them.
"""

from __future__ import annotations

from dataclasses import dataclass

from slotpool.clock import Clock
from slotpool.controller.types import Applied, Executed, Holds
from slotpool.domain.events import NewEvent, Outcome, minute_utc
from slotpool.domain.freeze import FreezePolicy
from slotpool.domain.pods import PodState
from slotpool.domain.scaling import HOLD, Backoff, Observation, Plan, Reason
from slotpool.store.uow import Store

EVENTS_KEPT = 1000
RUNTIME_FAILING = "runtime_failing"  # the reason of the hold a failing runtime is recorded as


@dataclass(frozen=True)
class Record:
    """What a pass writes besides the pods: its events, the queue's reason, the back-off."""

    events: tuple[NewEvent, ...]
    queue_reason: str | None  # None: nothing is queued
    backoff: Backoff | None  # None: it did not move


def action_events(decided: Plan, executed: Executed) -> list[NewEvent]:
    done = [applied for applied in executed.applied if not applied.handed_over]
    inputs = decided.summary() if done else {}
    return [action_event(applied, inputs) for applied in done]


def action_event(applied: Applied, inputs: dict[str, object]) -> NewEvent:
    action = applied.action
    name = getattr(action, "name", None)
    suffix = f" ({applied.error})" if applied.error is not None else ""
    return NewEvent(
        action=action.kind,
        reason=action.reason.value,
        message=action.message + suffix,
        outcome=applied.outcome,
        inputs=inputs,
        pod=name if isinstance(name, str) else applied.pod,
    )


def hold_events(decided: Plan, recorded: Holds) -> tuple[list[NewEvent], Holds]:
    """The holds that started since the last pass (``recorded``), as events, and the holds to
    remember for the next pass."""
    current = frozenset((h.reason.value, h.message) for h in decided.holds)
    new = [h for h in decided.holds if (h.reason.value, h.message) not in recorded]
    inputs = decided.summary() if new else {}
    events = [
        NewEvent(
            action=HOLD,
            reason=h.reason.value,
            message=h.message,
            outcome=Outcome.held,
            inputs=inputs,
        )
        for h in new
    ]
    return events, current


def queue_reason(
    observation: Observation, decided: Plan, *, creation_failed: str | None = None
) -> str:
    """Why the pool's queued tasks wait, and until when if that is known; ``creation_failed``
    is the runtime's error if creating Pods failed in this pass."""
    freeze = observation.freeze
    if freeze.active:
        until = f" until {minute_utc(freeze.until)}" if freeze.until else ""
        if freeze.policy is FreezePolicy.no_new_tasks:
            return f"waiting: change freeze (no_new_tasks){until}; {freeze.reason()}"
        return f"waiting: {freeze.reason()}; no Pod is created{until}"
    if creation_failed is not None:
        return creation_failed_reason(creation_failed)
    for hold in decided.holds:
        if hold.reason is Reason.backoff:
            until = f" until {minute_utc(hold.until)}" if hold.until else ""
            return f"waiting: {hold.message}{until}"
        if hold.reason is Reason.max_replicas:
            return f"waiting for a free slot: {hold.message}"
    starting = (PodState.pending, PodState.starting)
    if decided.created or any(p.state in starting for p in observation.pods):
        return "waiting for a free slot: Pods are starting"
    return "waiting for a free slot"


def creation_failed_reason(error: str) -> str:
    """Why queued tasks wait when creating Pods failed with the runtime's ``error``."""
    return f"waiting: creating Pods failed ({error}); the controller tries again"


def record_of(
    observation: Observation,
    decided: Plan,
    events: list[NewEvent],
    *,
    backoff: Backoff,
    creation_failed: str | None = None,
) -> Record:
    """The record of a pass; ``backoff`` is the one the pass started from."""
    why = None
    if observation.queued:
        why = queue_reason(observation, decided, creation_failed=creation_failed)
    moved = decided.backoff if decided.backoff != backoff else None
    return Record(tuple(events), why, moved)


def runtime_failing_event(message: str) -> NewEvent:
    """The pool event of a pass that failed before it could decide (the runtime failed)."""
    return NewEvent(
        action=HOLD,
        reason=RUNTIME_FAILING,
        message=message,
        outcome=Outcome.held,
        inputs={},
    )


class Recorder:
    def __init__(self, *, store: Store, clock: Clock) -> None:
        self._store = store
        self._clock = clock

    async def write(self, pool_id: str, record: Record) -> None:
        """One transaction, none if there is nothing to write (a settled pool, nothing queued)."""
        if record.backoff is None and not record.events and record.queue_reason is None:
            return
        async with self._store.unit_of_work() as uow:
            if record.backoff is not None:
                await uow.pools.set_backoff(
                    pool_id,
                    failures=record.backoff.failures,
                    last_failure_at=record.backoff.last_failure_at,
                )
            if record.events:
                await uow.events.add(pool_id, record.events, now=self._clock())
                await uow.events.prune(pool_id, keep=EVENTS_KEPT)
            if record.queue_reason is not None:
                await uow.tasks.explain_queued(pool_id, reason=record.queue_reason)
