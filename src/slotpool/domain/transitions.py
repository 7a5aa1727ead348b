"""The one gate for task and slot state, its pure half: every change of a task's status.

A change is a value computed from the task as it was read, the event and the time: the statuses
it may go from (its condition), the status it goes to, the fields it sets, and the slot it frees,
reserves or takes again. The store applies it conditionally (``TaskRepository.apply``): if the
task has moved on meanwhile, nothing is written and no slot is touched. Besides a task's
creation and its start by the dispatcher (``TaskRepository.start``), nothing else writes a task's
status, so every rule about what ends a task and what becomes of its slot is here, in one place,
tested without a database (in the spirit of Prefect's orchestration rules, which name the states
each transition goes from and to).

No change ever turns an idle slot into a used one: only the dispatcher's ``take_slot`` does, under
the pod row's lock, which is what keeps a Pod from being drained with a busy or reserved slot.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from enum import Enum, StrEnum
from typing import Any

from slotpool.domain.pods import SlotState
from slotpool.domain.signals import Signal
from slotpool.domain.tasks import Next, StepStatus, Task, TaskStatus, Transition, after_step


class Keep(Enum):
    """A field the change leaves as it is (``None`` is a value: it clears the field)."""

    KEEP = "keep"


KEEP = Keep.KEEP

RUNNING = frozenset({TaskStatus.running})
AWAITING = frozenset({TaskStatus.awaiting_approval})
# The statuses in which a task holds a slot: busy while running, reserved while awaiting.
HOLDING = RUNNING | AWAITING


class Cause(StrEnum):
    """Why a task changes: the event the change answers."""

    delivered = "delivered"  # its step was handed to the agent
    continued = "continued"  # a step succeeded; the next one runs in the same slot
    awaits_approval = "awaits_approval"  # a step succeeded; the next one waits for a person
    finished = "finished"  # the last step succeeded, or one failed, timed out or was cancelled
    cancel_requested = "cancel_requested"  # running: the agent stops the step
    cancelled = "cancelled"  # not running: it ends at once
    approved = "approved"
    reservation_expired = "reservation_expired"
    lost = "lost"  # its agent is gone, or no longer runs its step


@dataclass(frozen=True)
class SlotChange:
    """What becomes of the slot the task holds: ``idle`` frees it, ``reserved`` keeps it for the
    task while a person decides, ``busy`` gives it back to the task's next step."""

    pod_id: int
    index: int
    to: SlotState


@dataclass(frozen=True)
class StepReport:
    """What an agent says about a step it ran."""

    index: int
    outcome: StepStatus
    exit_code: int | None
    message: str


@dataclass(frozen=True)
class TaskChange:
    """One transition: applied only while the task is in ``from_statuses`` (and, if ``at_step``
    is given, at that step); then it goes to ``to``, its fields are set (``KEEP`` ones are left
    alone), and only then ``slot`` is changed, if the task still holds it."""

    task_id: str
    pool_id: str
    pod_id: int | None
    cause: Cause
    from_statuses: frozenset[TaskStatus]
    to: TaskStatus
    now: datetime
    at_step: int | None = None
    reason: str | Keep = KEEP
    results: tuple[dict[str, Any], ...] | Keep = KEEP
    current_step: int | Keep = KEEP
    step_started_at: datetime | Keep | None = KEEP
    finished_at: datetime | Keep | None = KEEP
    reserved_until: datetime | Keep | None = KEEP
    cancel_requested: bool | Keep = KEEP
    slot: SlotChange | None = None
    # When the task started, as read: not written, its duration is measured from it.
    started_at: datetime | None = None

    def sets(self) -> dict[str, Any]:
        """The task's fields this change writes besides its status, by name."""
        fields = {
            "reason": self.reason,
            "results": self.results,
            "current_step": self.current_step,
            "step_started_at": self.step_started_at,
            "finished_at": self.finished_at,
            "reserved_until": self.reserved_until,
            "cancel_requested": self.cancel_requested,
        }
        return {name: value for name, value in fields.items() if value is not KEEP}

    def signals(self) -> tuple[Signal, ...]:
        """Who must look again once the change is committed: the task's followers always; its
        agent when the change did not come from the agent (it has a step to run, to stop, or
        a reserved slot to let go); the pool's dispatcher and controller when a slot came free;
        every dispatcher when the task went back into the queue (an approval)."""
        said: list[Signal] = [Signal.task(self.task_id)]
        if self.pod_id is not None and self.cause in _AGENT_MUST_LOOK:
            said.append(Signal.pod(self.pod_id))
        if self.slot is not None and self.slot.to is SlotState.idle:
            said.append(Signal.pool(self.pool_id))
        if self.to is TaskStatus.queued:
            said.append(Signal.queued(self.pool_id))
        return tuple(said)


_AGENT_MUST_LOOK = frozenset(
    {Cause.cancel_requested, Cause.cancelled, Cause.approved, Cause.reservation_expired}
)


def _slot(task: Task, to: SlotState) -> SlotChange | None:
    if task.pod_id is None or task.slot_index is None:
        return None
    return SlotChange(pod_id=task.pod_id, index=task.slot_index, to=to)


def _change(
    task: Task, cause: Cause, *, since: frozenset[TaskStatus], to: TaskStatus, now: datetime
) -> TaskChange:
    """A change of ``task`` that sets nothing yet (``replace`` adds what it sets)."""
    return TaskChange(
        task.id,
        task.pool_id,
        task.pod_id,
        cause,
        from_statuses=since,
        to=to,
        now=now,
        started_at=task.started_at,
    )


def delivered(task: Task, *, now: datetime) -> TaskChange:
    """The running step was handed to the agent: it counts as started from now."""
    return replace(
        _change(task, Cause.delivered, since=RUNNING, to=TaskStatus.running, now=now),
        at_step=task.current_step,
        step_started_at=now,
    )


def step_record(task: Task, report: StepReport, *, now: datetime) -> dict[str, Any]:
    """The entry a step's report leaves in the task's results."""
    started = task.step_started_at
    return {
        "step_index": report.index,
        "status": report.outcome.value,
        "exit_code": report.exit_code,
        "message": report.message,
        "started_at": started.isoformat() if started else None,
        "finished_at": now.isoformat(),
    }


def next_move(task: Task, report: StepReport) -> Transition:
    """What follows the reported step (``after_step``'s rule, for this task)."""
    return after_step(
        task.steps,
        index=report.index,
        outcome=report.outcome,
        cancel_requested=task.cancel_requested,
    )


def step_ended(
    task: Task, report: StepReport, *, reservation_ttl: timedelta, now: datetime
) -> TaskChange:
    """A running step ended: the next step runs in the same slot, or the slot is reserved until
    the next step is approved (for ``reservation_ttl``), or the task is over and its slot is
    freed. Only for the step the task is at: a report sent twice moves the task once."""
    move = next_move(task, report)
    ended = replace(
        _change(task, Cause.finished, since=RUNNING, to=move.status, now=now),
        at_step=report.index,
        results=(*task.results, step_record(task, report, now=now)),
    )
    if move.next is Next.continue_:
        return replace(
            ended, cause=Cause.continued, current_step=move.step_index, step_started_at=now
        )
    if move.next is Next.await_approval:
        return replace(
            ended,
            cause=Cause.awaits_approval,
            current_step=move.step_index,
            reserved_until=now + reservation_ttl,
            # Counted from 1, as people (and the UI) count steps.
            reason=f"waits for approval of step {move.step_index + 1}",
            slot=_slot(task, SlotState.reserved),
        )
    reason = "cancelled on request" if move.status is TaskStatus.cancelled else ""
    return replace(ended, finished_at=now, reason=reason, slot=_slot(task, SlotState.idle))


def cancel(task: Task, *, by: str, now: datetime) -> TaskChange | None:
    """A running task is asked to stop (the agent stops the step, SIGTERM then SIGKILL, and
    reports it cancelled); a queued or awaiting one ends at once and frees its reserved slot.
    ``None`` if it has already ended."""
    if task.final:
        return None
    if task.status is TaskStatus.running:
        return replace(
            _change(task, Cause.cancel_requested, since=RUNNING, to=TaskStatus.running, now=now),
            cancel_requested=True,
        )
    return replace(
        # Only from the status it was read in: one started or approved meanwhile is running,
        # and is asked to stop instead.
        _change(
            task, Cause.cancelled, since=frozenset({task.status}), to=TaskStatus.cancelled, now=now
        ),
        reason=f"cancelled by {by}",
        cancel_requested=True,
        finished_at=now,
        reserved_until=None,
        slot=_slot(task, SlotState.idle),
    )


def approve(task: Task, *, by: str, now: datetime) -> TaskChange | None:
    """The gated step may run: in the slot reserved for it, or, if the task never had one (its
    first step was gated), back in the queue. ``None`` if the task is not awaiting approval."""
    if task.status is not TaskStatus.awaiting_approval:
        return None
    approved = replace(
        _change(task, Cause.approved, since=AWAITING, to=TaskStatus.queued, now=now),
        at_step=task.current_step,
        reason="",
        results=(*task.results, {"approved_by": by, "approved_at": now.isoformat()}),
    )
    slot = _slot(task, SlotState.busy)
    if slot is None:
        return approved
    return replace(
        approved, to=TaskStatus.running, reserved_until=None, step_started_at=None, slot=slot
    )


def reservation_expired(task: Task, *, now: datetime) -> TaskChange:
    """Nobody approved the next step in time: the task ends and its reserved slot is freed."""
    return replace(
        _change(task, Cause.reservation_expired, since=AWAITING, to=TaskStatus.expired, now=now),
        at_step=task.current_step,
        reason="no approval before the reservation expired; the slot was freed",
        finished_at=now,
        slot=_slot(task, SlotState.idle),
    )


def agent_gone(task: Task, *, reason: str, now: datetime) -> TaskChange:
    """The task's agent is gone (silent, its Pod ended or vanished): running or awaiting, the
    task is lost (never rerun: a step may have had effects) and its slot freed."""
    freed = _slot(task, SlotState.idle)
    lost = replace(
        _change(task, Cause.lost, since=HOLDING, to=TaskStatus.lost, now=now),
        reason=reason,
        finished_at=now,
        slot=freed,
    )
    if freed is None:
        # Read before it had a slot (a first step awaiting approval): it may have been approved
        # and started since, so only while it is still as read.
        return replace(lost, from_statuses=frozenset({task.status}), at_step=task.current_step)
    return lost


def step_gone(task: Task, *, agent: str, now: datetime) -> TaskChange:
    """The agent re-registered without the step it was given: the task is lost (never silently
    run twice), if it is still running that step."""
    reason = f"agent {agent} re-registered without step {task.current_step}"
    lost = agent_gone(task, reason=reason, now=now)
    return replace(lost, from_statuses=RUNNING, at_step=task.current_step)
