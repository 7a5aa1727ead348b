"""The gate's pure half as a property: no sequence of transitions, however stale the reads they
were computed from, leaves a slot and its task disagreeing (a model of the store's conditional
apply and of the dispatcher's start stands in for the database)."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from slotpool.domain import transitions
from slotpool.domain.pods import SlotState
from slotpool.domain.tasks import FINAL, StepSpec, StepStatus, Task, TaskStatus
from slotpool.domain.transitions import HOLDING, TaskChange
from tests.unit.test_transitions import HOUR, NOW, report, task

SLOTS = 2
OPS = ("start", "deliver", "result", "cancel", "approve", "expire", "gone", "step_gone")


@dataclass
class World:
    """Tasks and one pod's slots as the store keeps them, with ``TaskRepository.apply``'s rule
    and the dispatcher's start; every version of each task is kept, to compute stale changes."""

    tasks: dict[str, Task]
    slots: dict[int, tuple[SlotState, str | None]] = field(
        default_factory=lambda: dict.fromkeys(range(SLOTS), (SlotState.idle, None))
    )
    seen: dict[str, list[Task]] = field(default_factory=dict)

    def apply(self, change: TaskChange) -> bool:
        current = self.tasks[change.task_id]
        if current.status not in change.from_statuses:
            return False
        if change.at_step is not None and current.current_step != change.at_step:
            return False
        self._keep(replace(current, status=change.to, updated_at=change.now, **change.sets()))
        moved = change.slot
        if moved is not None and self.slots[moved.index][1] == change.task_id:
            self.slots[moved.index] = (
                moved.to,
                None if moved.to is SlotState.idle else change.task_id,
            )
        return True

    def start(self, task_id: str, now: datetime) -> None:
        current = self.tasks[task_id]
        idle = [i for i, (state, _) in self.slots.items() if state is SlotState.idle]
        if current.status is not TaskStatus.queued or not idle:
            return
        self.slots[idle[0]] = (SlotState.busy, task_id)
        self._keep(
            replace(
                current,
                status=TaskStatus.running,
                pod_id=7,
                slot_index=idle[0],
                step_started_at=None,
                reason="",
                updated_at=now,
            )
        )

    def _keep(self, version: Task) -> None:
        self.tasks[version.id] = version
        self.seen.setdefault(version.id, []).append(version)


def change_for(op: str, read: Task, outcome: StepStatus, now: datetime) -> TaskChange | None:
    if op == "deliver" and read.status is TaskStatus.running:
        return transitions.delivered(read, now=now)
    if op == "result" and read.status is TaskStatus.running:
        step = report(read.current_step, outcome)
        return transitions.step_ended(read, step, reservation_ttl=HOUR, now=now)
    if op == "cancel":
        return transitions.cancel(read, by="bob", now=now)
    if op == "approve":
        return transitions.approve(read, by="carol", now=now)
    if op == "expire" and read.status is TaskStatus.awaiting_approval:
        return transitions.reservation_expired(read, now=now)
    if op == "gone" and read.status in HOLDING:
        return transitions.agent_gone(read, reason="gone", now=now)
    if op == "step_gone" and read.status is TaskStatus.running:
        return transitions.step_gone(read, agent="a", now=now)
    return None


def check(world: World) -> None:
    for index, (state, holder) in world.slots.items():
        if state is SlotState.idle:
            assert holder is None
            continue
        assert holder is not None
        held = world.tasks[holder]
        wanted = TaskStatus.running if state is SlotState.busy else TaskStatus.awaiting_approval
        assert held.status is wanted, f"slot {index} {state} with a task {held.status}"
        assert held.slot_index == index
    for one in world.tasks.values():
        holds = [i for i, (_, holder) in world.slots.items() if holder == one.id]
        if one.status in FINAL or one.status is TaskStatus.queued:
            assert not holds, f"a {one.status} task holds slot {holds}"
        if one.status is TaskStatus.running:
            assert holds == [one.slot_index]
        if one.status is TaskStatus.awaiting_approval and one.slot_index is not None:
            assert holds == [one.slot_index]


steps_of = st.lists(
    st.builds(StepSpec, run=st.just("x"), requires_approval=st.booleans()), min_size=1, max_size=3
)
events = st.lists(
    st.tuples(
        st.sampled_from(OPS),
        st.integers(0, 2),
        st.integers(0, 4),
        st.sampled_from(list(StepStatus)),
    ),
    max_size=40,
)


@settings(max_examples=300)
@given(st.lists(steps_of, min_size=1, max_size=3), events)
def test_no_sequence_of_transitions_leaves_a_slot_and_its_task_disagreeing(
    tasks: list[list[StepSpec]], happenings: list[tuple[str, int, int, StepStatus]]
) -> None:
    """Each change is computed from the task as read some versions ago (a stale read, as a
    racing request would have); applied through the gate's rule, slots and tasks still agree:
    a busy slot's task is running there, a reserved slot's task awaits approval there, a final
    or queued task holds no slot, and a final task never changes again."""
    initial = {}
    for n, steps in enumerate(tasks):
        gated = steps[0].requires_approval
        status = TaskStatus.awaiting_approval if gated else TaskStatus.queued
        initial[f"task-{n}"] = task(
            status,
            id=f"task-{n}",
            steps=tuple(steps),
            pod_id=None,
            slot_index=None,
            started_at=None,
            step_started_at=None,
        )
    world = World(tasks=dict(initial), seen={k: [v] for k, v in initial.items()})
    now = NOW
    for op, which, age, outcome in happenings:
        now += timedelta(seconds=1)
        task_id = f"task-{which % len(tasks)}"
        before = world.tasks[task_id]
        if op == "start":
            world.start(task_id, now)
        else:
            versions = world.seen[task_id]
            read = versions[max(0, len(versions) - 1 - age)]
            change = change_for(op, read, outcome, now)
            if change is not None:
                world.apply(change)
        if before.status in FINAL:
            assert world.tasks[task_id] == before, "a final task changed"
        check(world)
