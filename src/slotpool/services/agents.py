"""The control plane's side of the agent protocol (docs/agent-protocol.md), answering with the
models of ``slotpool.protocol``.

An agent's claim is answered with the steps the dispatcher put in slots the agent reports free:
delivery is therefore repeatable (a lost answer is simply answered again) and a slot the agent
is busy with is never given anything.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta

from slotpool.clock import Clock
from slotpool.domain import transitions
from slotpool.domain.config import PoolConfig
from slotpool.domain.errors import Issue
from slotpool.domain.pods import Pod, Slot, SlotState
from slotpool.domain.signals import Signal
from slotpool.domain.tasks import Next, StepStatus, Task, TaskStatus
from slotpool.domain.transitions import Cause, StepReport, TaskChange
from slotpool.protocol import (
    Assignment,
    ClaimAnswer,
    HeartbeatAnswer,
    RegisterAnswer,
    ResultAnswer,
    RunningStep,
    assignment,
)
from slotpool.services.dispatch import Dispatcher
from slotpool.services.errors import Conflict, Invalid, NotFound
from slotpool.services.notify import Notifier
from slotpool.services.pools import PoolService, require_pool
from slotpool.services.tasks import require_task
from slotpool.services.tokens import AgentIdentity, TokenService
from slotpool.settings import Settings
from slotpool.store.uow import Store, UnitOfWork


class AgentService:
    def __init__(
        self,
        *,
        store: Store,
        settings: Settings,
        pools: PoolService,
        tokens: TokenService,
        dispatcher: Dispatcher,
        notifier: Notifier,
        clock: Clock,
    ) -> None:
        self._store = store
        self._settings = settings
        self._pools = pools
        self._tokens = tokens
        self.dispatcher = self._dispatcher = dispatcher
        self.notifier = self._notifier = notifier
        self._clock = clock

    async def pods(self, pool_id: str) -> list[Pod]:
        async with self._store.unit_of_work() as uow:
            return await uow.pods.of_pool(pool_id)

    async def register(
        self,
        identity: AgentIdentity,
        pool_id: str,
        *,
        name: str,
        slots: int,
        version: str,
        running: list[RunningStep],
    ) -> RegisterAnswer:
        self._tokens.require_scope(identity, pool_id)
        now = self._clock()
        async with self._store.unit_of_work() as uow:
            pool = await require_pool(uow, pool_id)
            known = await uow.pods.find(pool_id, name)
            if known is not None and len(known.slots) != slots:
                raise Conflict(
                    f"agent {name} registered with {len(known.slots)} slots before, now {slots}: "
                    "start it under a new name"
                )
            pod = await uow.pods.register(
                pool_id=pool_id,
                name=name,
                slots=slots,
                version=version,
                config_hash=self._pools.config_hash(pool),
                now=now,
            )
            await self._forget_what_it_no_longer_runs(uow, pod, running, now=now)
            uow.signal(Signal.pool(pool_id))  # capacity arrived: the controller looks again
        await self._dispatcher.dispatch(pool_id)
        return RegisterAnswer(
            name=pod.name,
            heartbeat_seconds=self._settings.heartbeat_seconds,
            claim_wait_seconds=self._settings.claim_wait_seconds,
        )

    async def _forget_what_it_no_longer_runs(
        self, uow: UnitOfWork, pod: Pod, running: list[RunningStep], *, now: datetime
    ) -> None:
        """After a reconnect the agent says what still runs; a step it was given and no longer
        runs is lost (never silently run twice)."""
        still = {(r.task_id, r.step_index) for r in running}
        for task in await uow.tasks.on_pod(pod.id, [TaskStatus.running]):
            if task.step_started_at is None or (task.id, task.current_step) in still:
                continue
            await self._lose(uow, transitions.step_gone(task, agent=pod.name, now=now))

    async def heartbeat(
        self, identity: AgentIdentity, pool_id: str, name: str, *, draining: bool
    ) -> HeartbeatAnswer:
        self._tokens.require_scope(identity, pool_id)
        now = self._clock()
        async with self._store.unit_of_work() as uow:
            pod = await self._pod(uow, pool_id, name)
            await uow.pods.heartbeat(pod.id, now=now, draining=draining)
            cancel = [
                t.id
                for t in await uow.tasks.on_pod(pod.id, [TaskStatus.running])
                if t.cancel_requested
            ]
            drain = pod.state.value == "draining" or draining
            return HeartbeatAnswer(cancel=cancel, release=[], drain=drain)

    async def claim(
        self,
        identity: AgentIdentity,
        pool_id: str,
        name: str,
        *,
        free_slots: list[int],
        reserved_slots: list[int],
        wait_seconds: float,
    ) -> ClaimAnswer:
        self._tokens.require_scope(identity, pool_id)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait_seconds
        while True:
            woken = self._notifier.arm(Signal.pod(await self._pod_id(pool_id, name)))
            if free_slots:
                await self._dispatcher.dispatch(pool_id)
            answer = await self._answer(pool_id, name, free_slots, reserved_slots)
            remaining = deadline - loop.time()
            if not answer.is_empty() or remaining <= 0:
                return answer
            await self._notifier.wait(woken, seconds=remaining)

    async def _answer(
        self, pool_id: str, name: str, free_slots: list[int], reserved_slots: list[int]
    ) -> ClaimAnswer:
        now = self._clock()
        assignments: list[Assignment] = []
        release: list[str] = []
        async with self._store.unit_of_work() as uow:
            pod = await self._pod(uow, pool_id, name)
            await uow.pods.heartbeat(pod.id, now=now, draining=False)
            slots = {s.index: s for s in pod.slots}
            offered = set(free_slots) | set(reserved_slots)
            if unknown := sorted(offered - set(slots)):
                raise Invalid("bad claim", [Issue("free_slots", f"no slot {unknown[0]}")])
            for slot in pod.slots:
                if slot.index in reserved_slots and slot.state is not SlotState.reserved:
                    release += await _ended_reservation(uow, pod.id, slot)
                if slot.state is SlotState.busy and slot.task_id:
                    task = await require_task(uow, slot.task_id)
                    # Offered slots are answered again (a lost answer); a step placed in a slot
                    # that came free while this claim was already waiting is answered at once.
                    if slot.index in offered or task.step_started_at is None:
                        assignments.append(assignment(task, new_workdir=task.current_step == 0))
                    if task.step_started_at is None:
                        await uow.apply(transitions.delivered(task, now=now))
            cancel = [
                t.id
                for t in await uow.tasks.on_pod(pod.id, [TaskStatus.running])
                if t.cancel_requested
            ]
        return ClaimAnswer(assignments=assignments, cancel=cancel, release=release)

    async def log(
        self, identity: AgentIdentity, pool_id: str, task_id: str, *, step: int, seq: int, data: str
    ) -> None:
        self._tokens.require_scope(identity, pool_id)
        async with self._store.unit_of_work() as uow:
            await self._task_of(uow, pool_id, task_id)
            await uow.tasks.add_log(task_id, step=step, seq=seq, data=data, now=self._clock())
            uow.signal(Signal.task(task_id))  # its followers read on

    async def result(
        self,
        identity: AgentIdentity,
        pool_id: str,
        task_id: str,
        *,
        step_index: int,
        status: StepStatus,
        exit_code: int | None,
        message: str,
    ) -> ResultAnswer:
        self._tokens.require_scope(identity, pool_id)
        now = self._clock()
        async with self._store.unit_of_work() as uow:
            task = await self._task_of(uow, pool_id, task_id)
            if task.current_step != step_index or task.status is not TaskStatus.running:
                # Reported before (a retry after a lost answer): answer from the task's state.
                return self._answer_from_state(task, step_index)
            report = StepReport(step_index, status, exit_code=exit_code, message=message)
            hold = await self._hold_for_approval(uow, task, report)
            change = transitions.step_ended(task, report, reservation_ttl=hold, now=now)
            answer = await self._apply(uow, task, change)
        self._after(task, answer)
        return answer

    @staticmethod
    async def _hold_for_approval(uow: UnitOfWork, task: Task, report: StepReport) -> timedelta:
        """How long the slot is kept if the next step waits for approval: the pool's setting,
        read only then."""
        if transitions.next_move(task, report).next is not Next.await_approval:
            return timedelta(0)
        pool = await require_pool(uow, task.pool_id)
        return timedelta(seconds=(pool.config or PoolConfig()).reservation_ttl_seconds)

    async def _apply(self, uow: UnitOfWork, task: Task, change: TaskChange) -> ResultAnswer:
        if not await uow.apply(change):
            # The task moved on since it was read (the same report racing itself after a lost
            # answer, or its agent declared gone): answer from where it went.
            return self._answer_from_state(await require_task(uow, task.id), task.current_step)
        if change.cause is Cause.continued:
            following = await require_task(uow, task.id)
            return ResultAnswer(
                next=assignment(following, new_workdir=False), reserve=False, release=False
            )
        if change.cause is Cause.awaits_approval:
            return ResultAnswer(next=None, reserve=True, release=False)
        return ResultAnswer(next=None, reserve=False, release=True)

    def _after(self, task: Task, answer: ResultAnswer) -> None:
        if answer.release:
            # A slot came free: queued work of the pool may go there now.
            asyncio.get_running_loop().create_task(self._dispatcher.dispatch(task.pool_id))

    @staticmethod
    def _answer_from_state(task: Task, step_index: int) -> ResultAnswer:
        if task.status is TaskStatus.running and task.current_step == step_index + 1:
            return ResultAnswer(
                next=assignment(task, new_workdir=False), reserve=False, release=False
            )
        if task.status is TaskStatus.awaiting_approval:
            return ResultAnswer(next=None, reserve=True, release=False)
        return ResultAnswer(next=None, reserve=False, release=task.final)

    async def _lose(self, uow: UnitOfWork, change: TaskChange) -> None:
        await uow.apply(change)

    async def _pod(self, uow: UnitOfWork, pool_id: str, name: str) -> Pod:
        pod = await uow.pods.find(pool_id, name)
        if pod is None:
            raise NotFound(f"agent {name} is not registered in {pool_id}: register first")
        return pod

    async def _pod_id(self, pool_id: str, name: str) -> int:
        async with self._store.unit_of_work() as uow:
            return (await self._pod(uow, pool_id, name)).id

    @staticmethod
    async def _task_of(uow: UnitOfWork, pool_id: str, task_id: str) -> Task:
        task = await require_task(uow, task_id)
        if task.pool_id != pool_id:
            raise NotFound(f"task {task_id} not found in {pool_id}")
        return task


async def _ended_reservation(uow: UnitOfWork, pod_id: int, slot: Slot) -> list[str]:
    """The task whose reservation the agent still holds on ``slot`` though it ended (expired,
    cancelled): the last task on the slot if it is final, the slot idle or given since to
    another task (a cancel and a new task's dispatch may both come before the agent's claim)."""
    last = await uow.tasks.last_on_slot(pod_id, slot.index, other_than=slot.task_id)
    return [last.id] if last is not None and last.final else []
