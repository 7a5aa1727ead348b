"""The gate's store half, on SQLite and PostgreSQL: ``TaskRepository.apply`` writes a transition
only while the task is where the transition was computed from, and then changes only the slot that
task holds. A stale transition writes nothing and frees nothing; a slot of another task is never
touched; two transitions of one task racing in two transactions are applied once."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from slotpool.domain import transitions
from slotpool.domain.config import PoolType
from slotpool.domain.pods import EndCause, Pod, PodEnd, PodState, SlotState
from slotpool.domain.tasks import StepStatus, Task, TaskStatus, TaskSubmit
from slotpool.domain.transitions import StepReport
from slotpool.services.dispatch import Dispatcher
from slotpool.services.errors import Conflict
from slotpool.services.lifecycle import retire_pod
from slotpool.services.notify import Notifier
from slotpool.services.pools import PoolService
from slotpool.services.tasks import TaskService, new_task_row
from slotpool.settings import Settings
from slotpool.store.pools import NewPool
from slotpool.store.uow import Store

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
LATER = NOW + timedelta(seconds=5)
HOUR = timedelta(hours=1)
POOL = "pool-0123456789abcdef"
Steps = list[dict[str, object]]
ONE_STEP: Steps = [{"run": "a"}]
PLAN_APPLY: Steps = [{"run": "plan"}, {"run": "apply", "requires_approval": True}]


@pytest.fixture
async def store(store: Store) -> Store:
    """The migrated store (conftest), with the static pool these tests' tasks belong to."""
    async with store.unit_of_work() as uow:
        await uow.pools.add(NewPool(POOL, "p", "", PoolType.static, None, by="test", now=NOW))
    return store


@pytest.fixture
async def pod(store: Store) -> Pod:
    async with store.unit_of_work() as uow:
        return await uow.pods.register(
            pool_id=POOL,
            name="agent-1",
            slots=2,
            version="t",
            config_hash=None,
            credential_digest=None,
            now=NOW,
        )


async def queued(store: Store, steps: Steps = ONE_STEP) -> Task:
    body = TaskSubmit.model_validate({"pool_id": POOL, "steps": steps})
    async with store.unit_of_work() as uow:
        return await uow.tasks.add(new_task_row(body, by="test", now=NOW))


async def running(store: Store, pod: Pod, slot: int, steps: Steps = ONE_STEP) -> Task:
    """A task started on ``slot`` as the dispatcher starts one, its step handed to the agent."""
    task = await queued(store, steps)
    async with store.unit_of_work() as uow:
        assert await uow.pods.take_slot(pod.id, slot, task_id=task.id, now=NOW)
        assert await uow.tasks.start(task.id, pod_id=pod.id, pod_name=pod.name, slot=slot, now=NOW)
        started = await uow.tasks.get(task.id)
        assert started is not None
        assert await uow.tasks.apply(transitions.delivered(started, now=NOW))
    return await read(store, task.id)


async def read(store: Store, task_id: str) -> Task:
    async with store.unit_of_work() as uow:
        task = await uow.tasks.get(task_id)
    assert task is not None
    return task


async def slots(store: Store, pod: Pod) -> dict[int, tuple[SlotState, str | None]]:
    async with store.unit_of_work() as uow:
        found = await uow.pods.get(pod.id)
    assert found is not None
    return {s.index: (s.state, s.task_id) for s in found.slots}


async def apply(store: Store, change: transitions.TaskChange) -> bool:
    async with store.unit_of_work() as uow:
        return await uow.tasks.apply(change)


def ended(task: Task, outcome: StepStatus = StepStatus.succeeded) -> transitions.TaskChange:
    report = StepReport(task.current_step, outcome, exit_code=0, message="done")
    return transitions.step_ended(task, report, reservation_ttl=HOUR, now=LATER)


async def test_a_finished_task_frees_its_slot(store: Store, pod: Pod) -> None:
    task = await running(store, pod, 0)
    assert await apply(store, ended(task))
    done = await read(store, task.id)
    assert done.status is TaskStatus.succeeded
    assert done.finished_at == LATER
    assert done.updated_at == LATER
    assert done.reason == ""
    assert [r["status"] for r in done.results] == ["succeeded"]
    assert done.results[0]["started_at"] == NOW.isoformat()
    assert await slots(store, pod) == {0: (SlotState.idle, None), 1: (SlotState.idle, None)}


async def test_a_gated_step_reserves_the_slot_and_the_approval_takes_it_back(
    store: Store, pod: Pod
) -> None:
    task = await running(store, pod, 1, PLAN_APPLY)
    assert await apply(store, ended(task))
    waiting = await read(store, task.id)
    assert waiting.status is TaskStatus.awaiting_approval
    assert (waiting.current_step, waiting.reserved_until) == (1, LATER + HOUR)
    assert waiting.reason == "waits for approval of step 2"
    assert (await slots(store, pod))[1] == (SlotState.reserved, task.id)

    approval = transitions.approve(waiting, by="carol", now=LATER)
    assert approval is not None
    assert await apply(store, approval)
    approved = await read(store, task.id)
    assert approved.status is TaskStatus.running
    assert (approved.reserved_until, approved.step_started_at) == (None, None)
    assert approved.results[-1] == {"approved_by": "carol", "approved_at": LATER.isoformat()}
    assert (await slots(store, pod))[1] == (SlotState.busy, task.id)


async def test_an_expired_reservation_frees_the_slot(store: Store, pod: Pod) -> None:
    task = await running(store, pod, 0, PLAN_APPLY)
    assert await apply(store, ended(task))
    async with store.unit_of_work() as uow:
        (expired,) = await uow.tasks.reservations_expired(now=LATER + 2 * HOUR)
        assert await uow.tasks.apply(transitions.reservation_expired(expired, now=LATER))
    assert (await read(store, task.id)).status is TaskStatus.expired
    assert (await slots(store, pod))[0] == (SlotState.idle, None)


async def test_a_transition_whose_status_no_longer_holds_applies_nothing(
    store: Store, pod: Pod
) -> None:
    """Computed from a read that is stale by the time it is written: the task's new state and
    the slot, now another task's, are left as they are."""
    task = await running(store, pod, 0)
    stale_end, stale_loss = ended(task), transitions.agent_gone(task, reason="late", now=LATER)
    assert await apply(store, transitions.agent_gone(task, reason="agent gone", now=NOW))
    assert (await slots(store, pod))[0] == (SlotState.idle, None)
    after = await running(store, pod, 0)  # the slot is given to the next task

    assert not await apply(store, stale_end)
    assert not await apply(store, stale_loss)
    lost = await read(store, task.id)
    assert (lost.status, lost.reason, lost.results) == (TaskStatus.lost, "agent gone", ())
    assert (await slots(store, pod))[0] == (SlotState.busy, after.id)
    assert (await read(store, after.id)).status is TaskStatus.running


async def test_a_report_applied_twice_moves_the_task_once(store: Store, pod: Pod) -> None:
    task = await running(store, pod, 0, [{"run": "a"}, {"run": "b"}])
    report = ended(task)
    assert await apply(store, report)
    assert not await apply(store, report)  # the same step again: the task is at the next one
    moved = await read(store, task.id)
    assert (moved.status, moved.current_step, len(moved.results)) == (TaskStatus.running, 1, 1)
    assert moved.step_started_at == LATER
    assert (await slots(store, pod))[0] == (SlotState.busy, task.id)


async def test_a_slot_another_task_holds_is_never_freed_or_reserved(store: Store, pod: Pod) -> None:
    """Even where the books disagree (a task that says it is on slot 0 while another holds it),
    the gate changes a slot only for the task that holds it."""
    holder = await running(store, pod, 0)
    for steps in (ONE_STEP, PLAN_APPLY):
        claimant = await queued(store, steps)
        async with store.unit_of_work() as uow:
            assert await uow.tasks.start(claimant.id, pod_id=pod.id, pod_name="p", slot=0, now=NOW)
        assert await apply(store, ended(await read(store, claimant.id)))
        assert (await slots(store, pod))[0] == (SlotState.busy, holder.id)


async def test_racing_transitions_of_one_task_are_applied_once(
    database_url: str, store: Store, pod: Pod
) -> None:
    """Two transactions (as two server processes would) end the same task: the second waits for
    the first's task row, then finds its condition gone and writes nothing."""
    task = await running(store, pod, 0)
    other = Store(database_url)
    try:
        async with store.unit_of_work() as first:
            assert await first.tasks.apply(transitions.agent_gone(task, reason="gone", now=NOW))
            second = asyncio.create_task(apply(other, ended(task)))
            await asyncio.sleep(0.5)
            assert not second.done(), "the second transition did not wait for the first"
        assert await second is False
    finally:
        await other.close()
    final = await read(store, task.id)
    assert (final.status, final.reason, final.results) == (TaskStatus.lost, "gone", ())
    assert (await slots(store, pod))[0] == (SlotState.idle, None)


async def test_retiring_a_pod_loses_its_tasks_and_frees_their_slots(store: Store, pod: Pod) -> None:
    busy = await running(store, pod, 0)
    reserved = await running(store, pod, 1, PLAN_APPLY)
    assert await apply(store, ended(reserved))
    async with store.unit_of_work() as uow:
        why = "agent-1 went silent"
        lost = await retire_pod(uow, pod, PodEnd(EndCause.agent_lost), reason=why, now=LATER)
    assert sorted(lost) == sorted([busy.id, reserved.id])
    for task_id in lost:
        gone = await read(store, task_id)
        assert (gone.status, gone.reason, gone.finished_at) == (
            TaskStatus.lost,
            "agent-1 went silent",
            LATER,
        )
    assert await slots(store, pod) == {0: (SlotState.idle, None), 1: (SlotState.idle, None)}
    async with store.unit_of_work() as uow:
        retired = await uow.pods.get(pod.id)
    assert retired is not None
    assert retired.state is PodState.failed


def later() -> datetime:
    return LATER


def task_service(store: Store, database_url: str) -> TaskService:
    settings = Settings.model_validate({"database_url": database_url, "local_runtime": False})
    dispatcher = Dispatcher(store, PoolService(store, settings, later), later)
    return TaskService(store, dispatcher, Notifier(), later)


async def test_a_cancel_racing_a_start_asks_the_started_task_to_stop(
    database_url: str, store: Store, pod: Pod
) -> None:
    """The cancel reads the task queued while a dispatcher is starting it: its write waits for
    the start, finds the task no longer queued, and cancels it as it now is (running: the agent
    is asked to stop), instead of ending a task that runs in a slot."""
    if database_url.startswith("sqlite"):
        pytest.skip(
            "SQLite has one writer at a time: no start comes between a cancel's read and write"
        )
    task = await queued(store)
    other = Store(database_url)
    cancels = task_service(other, database_url)
    try:
        async with store.unit_of_work() as uow:  # the dispatcher's start, not committed yet
            assert await uow.pods.take_slot(pod.id, 0, task_id=task.id, now=NOW)
            assert await uow.tasks.start(task.id, pod_id=pod.id, pod_name="p", slot=0, now=NOW)
            cancelling = asyncio.create_task(cancels.cancel(task.id, by="bob"))
            await asyncio.sleep(0.5)
            assert not cancelling.done(), "the cancel did not wait for the start"
        answered = await cancelling
    finally:
        await other.close()
    assert (answered.status, answered.cancel_requested) == (TaskStatus.running, True)
    assert (await slots(store, pod))[0] == (SlotState.busy, task.id)


async def test_an_approval_racing_the_expiry_is_refused_and_takes_no_slot(
    database_url: str, store: Store, pod: Pod
) -> None:
    """The approval reads the task awaiting while the sweeper expires it: its write waits for
    the expiry, finds the task no longer awaiting and is refused; the freed slot stays free."""
    if database_url.startswith("sqlite"):
        pytest.skip("SQLite has one writer at a time: no expiry comes between a read and a write")
    task = await running(store, pod, 0, PLAN_APPLY)
    assert await apply(store, ended(task))
    waiting = await read(store, task.id)
    other = Store(database_url)
    try:
        async with store.unit_of_work() as uow:  # the sweeper's expiry, not committed yet
            assert await uow.tasks.apply(transitions.reservation_expired(waiting, now=LATER))
            approving = asyncio.create_task(
                task_service(other, database_url).approve(task.id, by="c")
            )
            await asyncio.sleep(0.5)
            assert not approving.done(), "the approval did not wait for the expiry"
        with pytest.raises(Conflict, match="is expired, not awaiting_approval"):
            await approving
    finally:
        await other.close()
    assert (await read(store, task.id)).status is TaskStatus.expired
    assert (await slots(store, pod))[0] == (SlotState.idle, None)
