"""The gate's pure half as tables: each transition names the statuses it goes from, the step it
expects, the fields it sets and the slot it frees, reserves or takes."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from slotpool.domain import transitions
from slotpool.domain.pods import SlotState
from slotpool.domain.signals import Signal
from slotpool.domain.tasks import FINAL, StepSpec, StepStatus, Task, TaskStatus
from slotpool.domain.transitions import (
    AWAITING,
    HOLDING,
    RUNNING,
    Cause,
    SlotChange,
    StepReport,
    TaskChange,
)

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
EARLIER = NOW - timedelta(minutes=5)
HOUR = timedelta(hours=1)
PLAN_APPLY = (StepSpec(run="plan"), StepSpec(run="apply", requires_approval=True))
THREE = (StepSpec(run="a"), StepSpec(run="b"), StepSpec(run="c"))
DONE = {"step_index": 0, "status": "succeeded"}


def task(status: TaskStatus = TaskStatus.running, **fields: Any) -> Task:
    values: dict[str, Any] = {
        "id": "task-1",
        "pool_id": "pool-0123456789abcdef",
        "name": "t",
        "status": status,
        "env": {},
        "labels": {},
        "steps": THREE,
        "results": (),
        "current_step": 0,
        "pod_id": 7,
        "pod_name": "pod-7",
        "slot_index": 2,
        "cancel_requested": False,
        "reason": "",
        "created_by": "alice",
        "created_at": EARLIER,
        "started_at": EARLIER,
        "step_started_at": EARLIER,
        "finished_at": None,
        "reserved_until": None,
        "updated_at": EARLIER,
    }
    return Task(**{**values, **fields})


def report(index: int, outcome: StepStatus = StepStatus.succeeded) -> StepReport:
    return StepReport(
        index, outcome, exit_code=0 if outcome is StepStatus.succeeded else 1, message="m"
    )


def record(index: int, outcome: StepStatus) -> dict[str, Any]:
    return {
        "step_index": index,
        "status": outcome.value,
        "exit_code": 0 if outcome is StepStatus.succeeded else 1,
        "message": "m",
        "started_at": EARLIER.isoformat(),
        "finished_at": NOW.isoformat(),
    }


def slot(to: SlotState) -> SlotChange:
    return SlotChange(pod_id=7, index=2, to=to)


def ended(outcome: StepStatus, **fields: Any) -> Callable[[], TaskChange]:
    def make() -> TaskChange:
        running = task(**fields)
        index = running.current_step
        return transitions.step_ended(
            running, report(index, outcome), reservation_ttl=HOUR, now=NOW
        )

    return make


def only(change: TaskChange | None) -> TaskChange:
    assert change is not None
    return change


@dataclass(frozen=True)
class Expected:
    cause: Cause
    from_statuses: frozenset[TaskStatus]
    to: TaskStatus
    at_step: int | None
    sets: dict[str, Any]
    slot: SlotChange | None


TABLE: list[tuple[str, Callable[[], TaskChange], Expected]] = [
    (
        "a step handed to the agent starts now",
        lambda: transitions.delivered(task(step_started_at=None), now=NOW),
        Expected(Cause.delivered, RUNNING, TaskStatus.running, 0, {"step_started_at": NOW}, None),
    ),
    (
        "a step succeeded: the next runs in the same slot",
        ended(StepStatus.succeeded),
        Expected(
            Cause.continued,
            RUNNING,
            TaskStatus.running,
            0,
            {
                "results": (record(0, StepStatus.succeeded),),
                "current_step": 1,
                "step_started_at": NOW,
            },
            None,
        ),
    ),
    (
        "the next step is gated: the slot is reserved",
        ended(StepStatus.succeeded, steps=PLAN_APPLY),
        Expected(
            Cause.awaits_approval,
            RUNNING,
            TaskStatus.awaiting_approval,
            0,
            {
                "results": (record(0, StepStatus.succeeded),),
                "current_step": 1,
                "reserved_until": NOW + HOUR,
                "reason": "waits for approval of step 2",
            },
            slot(SlotState.reserved),
        ),
    ),
    (
        "the last step succeeded: the slot is freed",
        ended(StepStatus.succeeded, current_step=2, results=(DONE, DONE)),
        Expected(
            Cause.finished,
            RUNNING,
            TaskStatus.succeeded,
            2,
            {
                "results": (DONE, DONE, record(2, StepStatus.succeeded)),
                "finished_at": NOW,
                "reason": "",
            },
            slot(SlotState.idle),
        ),
    ),
    (
        "a step failed: the task ends",
        ended(StepStatus.failed),
        Expected(
            Cause.finished,
            RUNNING,
            TaskStatus.failed,
            0,
            {"results": (record(0, StepStatus.failed),), "finished_at": NOW, "reason": ""},
            slot(SlotState.idle),
        ),
    ),
    (
        "a step timed out: the task ends",
        ended(StepStatus.timed_out, current_step=1, results=(DONE,)),
        Expected(
            Cause.finished,
            RUNNING,
            TaskStatus.timed_out,
            1,
            {"results": (DONE, record(1, StepStatus.timed_out)), "finished_at": NOW, "reason": ""},
            slot(SlotState.idle),
        ),
    ),
    (
        "a step was cancelled: the task ends",
        ended(StepStatus.cancelled),
        Expected(
            Cause.finished,
            RUNNING,
            TaskStatus.cancelled,
            0,
            {
                "results": (record(0, StepStatus.cancelled),),
                "finished_at": NOW,
                "reason": "cancelled on request",
            },
            slot(SlotState.idle),
        ),
    ),
    (
        "a cancel was asked during a step that succeeded",
        ended(StepStatus.succeeded, cancel_requested=True),
        Expected(
            Cause.finished,
            RUNNING,
            TaskStatus.cancelled,
            0,
            {
                "results": (record(0, StepStatus.succeeded),),
                "finished_at": NOW,
                "reason": "cancelled on request",
            },
            slot(SlotState.idle),
        ),
    ),
    (
        "cancelling a running task asks the agent",
        lambda: only(transitions.cancel(task(), by="bob", now=NOW)),
        Expected(
            Cause.cancel_requested,
            RUNNING,
            TaskStatus.running,
            None,
            {"cancel_requested": True},
            None,
        ),
    ),
    (
        "cancelling a queued task ends it",
        lambda: only(
            transitions.cancel(
                task(TaskStatus.queued, pod_id=None, slot_index=None), by="bob", now=NOW
            )
        ),
        Expected(
            Cause.cancelled,
            frozenset({TaskStatus.queued}),
            TaskStatus.cancelled,
            None,
            {
                "reason": "cancelled by bob",
                "cancel_requested": True,
                "finished_at": NOW,
                "reserved_until": None,
            },
            None,
        ),
    ),
    (
        "cancelling an awaiting task frees its reserved slot",
        lambda: only(
            transitions.cancel(
                task(TaskStatus.awaiting_approval, reserved_until=NOW), by="bob", now=NOW
            )
        ),
        Expected(
            Cause.cancelled,
            AWAITING,
            TaskStatus.cancelled,
            None,
            {
                "reason": "cancelled by bob",
                "cancel_requested": True,
                "finished_at": NOW,
                "reserved_until": None,
            },
            slot(SlotState.idle),
        ),
    ),
    (
        "an approval gives the reserved slot back to the task",
        lambda: only(
            transitions.approve(
                task(
                    TaskStatus.awaiting_approval,
                    current_step=1,
                    results=(DONE,),
                    reserved_until=NOW,
                ),
                by="carol",
                now=NOW,
            )
        ),
        Expected(
            Cause.approved,
            AWAITING,
            TaskStatus.running,
            1,
            {
                "reason": "",
                "results": (DONE, {"approved_by": "carol", "approved_at": NOW.isoformat()}),
                "reserved_until": None,
                "step_started_at": None,
            },
            slot(SlotState.busy),
        ),
    ),
    (
        "an approval of a first step queues the task",
        lambda: only(
            transitions.approve(
                task(TaskStatus.awaiting_approval, pod_id=None, slot_index=None),
                by="carol",
                now=NOW,
            )
        ),
        Expected(
            Cause.approved,
            AWAITING,
            TaskStatus.queued,
            0,
            {"reason": "", "results": ({"approved_by": "carol", "approved_at": NOW.isoformat()},)},
            None,
        ),
    ),
    (
        "an unapproved reservation expires and frees the slot",
        lambda: transitions.reservation_expired(
            task(TaskStatus.awaiting_approval, current_step=1), now=NOW
        ),
        Expected(
            Cause.reservation_expired,
            AWAITING,
            TaskStatus.expired,
            1,
            {
                "reason": "no approval before the reservation expired; the slot was freed",
                "finished_at": NOW,
            },
            slot(SlotState.idle),
        ),
    ),
    (
        "a task whose agent is gone is lost",
        lambda: transitions.agent_gone(
            task(TaskStatus.awaiting_approval), reason="agent a went silent", now=NOW
        ),
        Expected(
            Cause.lost,
            HOLDING,
            TaskStatus.lost,
            None,
            {"reason": "agent a went silent", "finished_at": NOW},
            slot(SlotState.idle),
        ),
    ),
    (
        "a task read before it had a slot is lost only while still as read",
        lambda: transitions.agent_gone(
            task(TaskStatus.awaiting_approval, pod_id=None, slot_index=None),
            reason="agent a went silent",
            now=NOW,
        ),
        Expected(
            Cause.lost,
            AWAITING,
            TaskStatus.lost,
            0,
            {"reason": "agent a went silent", "finished_at": NOW},
            None,
        ),
    ),
    (
        "a step its agent no longer runs is lost",
        lambda: transitions.step_gone(task(current_step=1), agent="a-1", now=NOW),
        Expected(
            Cause.lost,
            RUNNING,
            TaskStatus.lost,
            1,
            {"reason": "agent a-1 re-registered without step 1", "finished_at": NOW},
            slot(SlotState.idle),
        ),
    ),
]


@pytest.mark.parametrize(
    ("make", "expected"), [(m, e) for _, m, e in TABLE], ids=[n for n, _, _ in TABLE]
)
def test_each_transition(make: Callable[[], TaskChange], expected: Expected) -> None:
    change = make()
    assert change.task_id == "task-1"
    assert change.now == NOW
    assert change.cause is expected.cause
    assert change.from_statuses == expected.from_statuses
    assert change.to is expected.to
    assert change.at_step == expected.at_step
    assert change.sets() == expected.sets
    assert change.slot == expected.slot


def test_a_final_task_cannot_be_cancelled_and_only_an_awaiting_one_approved() -> None:
    for status in FINAL:
        assert transitions.cancel(task(status), by="bob", now=NOW) is None
    for status in set(TaskStatus) - {TaskStatus.awaiting_approval}:
        assert transitions.approve(task(status), by="bob", now=NOW) is None


@pytest.mark.parametrize("status", sorted(FINAL))
def test_every_final_status_frees_the_slot(status: TaskStatus) -> None:
    """Whatever ends a task that holds a slot frees that slot."""
    holding = task(TaskStatus.awaiting_approval, reserved_until=NOW)
    changes = [
        ended(StepStatus.succeeded, current_step=2)(),
        ended(StepStatus.failed)(),
        ended(StepStatus.timed_out)(),
        ended(StepStatus.cancelled)(),
        only(transitions.cancel(holding, by="bob", now=NOW)),
        transitions.reservation_expired(holding, now=NOW),
        transitions.agent_gone(task(), reason="gone", now=NOW),
    ]
    ending = [c for c in changes if c.to is status]
    assert ending, f"nothing ends a task as {status}"
    assert all(c.slot == slot(SlotState.idle) for c in ending)


POOL = "pool-0123456789abcdef"


@pytest.mark.parametrize(
    ("make", "told"),
    [
        (lambda: transitions.delivered(task(), now=NOW), {Signal.task("task-1")}),
        (
            lambda: only(transitions.cancel(task(), by="bob", now=NOW)),
            {Signal.task("task-1"), Signal.pod(7)},
        ),
        (
            lambda: only(transitions.cancel(task(TaskStatus.awaiting_approval), by="b", now=NOW)),
            {Signal.task("task-1"), Signal.pod(7), Signal.pool(POOL)},
        ),
        (
            lambda: only(
                transitions.cancel(
                    task(TaskStatus.queued, pod_id=None, slot_index=None), by="b", now=NOW
                )
            ),
            {Signal.task("task-1")},
        ),
        (ended(StepStatus.failed), {Signal.task("task-1"), Signal.pool(POOL)}),
        (
            lambda: transitions.agent_gone(task(), reason="gone", now=NOW),
            {Signal.task("task-1"), Signal.pool(POOL)},
        ),
        (
            lambda: transitions.reservation_expired(task(TaskStatus.awaiting_approval), now=NOW),
            {Signal.task("task-1"), Signal.pod(7), Signal.pool(POOL)},
        ),
        (
            lambda: only(transitions.approve(task(TaskStatus.awaiting_approval), by="b", now=NOW)),
            {Signal.task("task-1"), Signal.pod(7)},
        ),
        (  # gated before it had a slot: back in the queue, where every dispatcher looks
            lambda: only(
                transitions.approve(
                    task(TaskStatus.awaiting_approval, pod_id=None, slot_index=None),
                    by="b",
                    now=NOW,
                )
            ),
            {Signal.task("task-1"), Signal.queued(POOL)},
        ),
    ],
)
def test_who_is_told_once_a_change_commits(
    make: Callable[[], TaskChange], told: set[Signal]
) -> None:
    """Followers always; the agent when the change did not come from it; the pool's dispatcher
    and controller when a slot came free; every dispatcher when the task is queued again."""
    assert set(make().signals()) == told
