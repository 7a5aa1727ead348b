"""The control plane's side of the agent protocol (docs/agent-protocol.md), answering with the
models of ``slotpool.protocol``.

An agent's claim is answered with the steps the dispatcher put in slots the agent reports free:
delivery is therefore repeatable (a lost answer is simply answered again) and a slot the agent
is busy with is never given anything.

Who may do what (``domain.agent_identity``): the pool token registers an agent slotpool launched
and not registered yet (or a free static name), binding the agent's own credential to its pod;
every other call shows that credential and reaches only that pod, its slots, and the tasks
running there, each at its running step.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime, timedelta

from slotpool import metrics
from slotpool.clock import Clock
from slotpool.domain import transitions
from slotpool.domain.agent_identity import Refused, refuse_first_registration
from slotpool.domain.config import PoolConfig
from slotpool.domain.errors import Issue
from slotpool.domain.pods import Pod, PodState
from slotpool.domain.pools import Pool
from slotpool.domain.signals import Signal
from slotpool.domain.tasks import Next, OutputChunk, StepStatus, Task, TaskStatus
from slotpool.domain.tokens import token_digest
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
from slotpool.runtime.errors import RuntimeApiError
from slotpool.services.dispatch import Dispatcher
from slotpool.services.errors import Conflict, Forbidden, Invalid, NotFound, RuntimeUnavailable
from slotpool.services.lifecycle import record_created
from slotpool.services.notify import Notifier
from slotpool.services.pools import PoolService, require_pool
from slotpool.services.runtimes import PoolRuntimes
from slotpool.services.tasks import require_task
from slotpool.services.tokens import AgentCaller, RegisteredAgent, TokenService
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
        runtimes: PoolRuntimes,
        dispatcher: Dispatcher,
        notifier: Notifier,
        clock: Clock,
    ) -> None:
        self._store = store
        self._settings = settings
        self._pools = pools
        self._tokens = tokens
        self._runtimes = runtimes
        self.dispatcher = self._dispatcher = dispatcher
        self.notifier = self._notifier = notifier
        self._clock = clock
        self._background: set[asyncio.Task[int]] = set()  # referenced until done

    async def pods(self, pool_id: str) -> list[Pod]:
        async with self._store.reading() as uow:
            return await uow.pods.of_pool(pool_id)

    async def register(
        self,
        caller: AgentCaller,
        pool_id: str,
        *,
        name: str,
        slots: int,
        version: str,
        running: list[RunningStep],
        pod_uid: str | None,
        credential: str | None,
    ) -> RegisterAnswer:
        """A first registration (the pool token, the agent's new ``credential``), or the
        registered agent's again (its credential: a reconnect, or a first one whose answer was
        lost), which keeps its pod and says what still runs there."""
        self._tokens.require_scope(caller, pool_id)
        holder = await self._holder(caller, credential)
        if holder is not None and holder.name != name:
            raise Forbidden(f"this credential is agent {holder.name}'s, not agent {name}'s")
        if holder is None:
            if credential is None:
                raise Invalid(
                    "a first registration binds the agent's own credential",
                    [Issue("credential", "required with the pool token: spa_ and 43 random chars")],
                )
            await self._record_if_launched(pool_id, name, pod_uid)
        binds = None if holder is not None else credential  # what a first registration binds
        now = self._clock()
        async with self._store.unit_of_work() as uow:
            pool = await require_pool(uow, pool_id)
            known = await uow.pods.find(pool_id, name)
            if holder is None:
                self._admit(known, pool, name=name, pod_uid=pod_uid, now=now)
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
                credential_digest=None if binds is None else token_digest(binds),
                now=now,
            )
            # A new agent runs nothing yet, whatever it says: what its name held is gone.
            still = running if binds is None else []
            await self._forget_what_it_no_longer_runs(uow, pod, still, now=now)
            uow.signal(Signal.pool(pool_id))  # capacity arrived: the controller looks again
            if holder is None:
                uow.after_commit(lambda: _registered(pool, known, now=now))
        await self._dispatcher.dispatch(pool_id)
        return RegisterAnswer(
            name=pod.name,
            heartbeat_seconds=self._settings.heartbeat_seconds,
            claim_wait_seconds=self._settings.claim_wait_seconds,
        )

    async def _holder(self, caller: AgentCaller, credential: str | None) -> RegisteredAgent | None:
        """The registered agent this registration comes from, if it comes from one: the bearer
        of a credential, or a pool token's bearer sending a credential bound already (its
        first registration again, the answer having been lost)."""
        bound = None if credential is None else await self._tokens.registered(credential)
        if isinstance(caller, RegisteredAgent):
            if credential is not None and bound != caller:
                raise Forbidden("the credential sent is not the one this agent shows as bearer")
            return caller
        if bound is not None and bound.pool_id != caller.pool_id:
            raise Forbidden("this credential belongs to an agent of another pool")
        return bound

    def _admit(
        self, known: Pod | None, pool: Pool, *, name: str, pod_uid: str | None, now: datetime
    ) -> None:
        """Refuse a first registration the pool token may not make (agent_identity.py)."""
        refusal = refuse_first_registration(
            known,
            pool_type=pool.pool_type,
            pool_id=pool.pool_id,
            name=name,
            uid=pod_uid,
            now=now,
            agent_timeout=timedelta(seconds=self._settings.agent_timeout_seconds),
        )
        if refusal is not None:
            error = Forbidden if refusal.kind is Refused.forbidden else Conflict
            raise error(refusal.message)

    async def _record_if_launched(self, pool_id: str, name: str, pod_uid: str | None) -> None:
        """An agent may register before the pass that created its pod has recorded it (it
        records them after all its creations returned): the pool's runtime is asked then, and
        a pod it lists under that name is recorded as that pass would have."""
        async with self._store.unit_of_work() as uow:
            pool = await require_pool(uow, pool_id)
            if not pod_uid or await uow.pods.find(pool_id, name) is not None:
                return
        runtime = self._runtimes.of_type(pool.pool_type)
        namespace = self._runtimes.namespace(pool)
        config = pool.effective_config()
        if runtime is None or namespace is None or config is None:
            return  # a static pool, or one this server runs no pods of
        try:
            listed = await runtime.pods(namespace, pool_id)
        except RuntimeApiError as exc:
            raise RuntimeUnavailable(f"cannot ask {runtime.name} about pod {name}: {exc}") from exc
        pod = next((p for p in listed if p.name == name and not p.ended), None)
        if pod is None or pod.deleting:
            return
        async with self._store.unit_of_work() as uow:
            await record_created(uow, pool_id, pod, slots=config.slots_per_pod, now=self._clock())

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
        self, caller: AgentCaller, pool_id: str, name: str, *, draining: bool
    ) -> HeartbeatAnswer:
        """One UPDATE, which also says whether there is a cancellation to read: a heartbeat
        with nothing to say reads nothing more."""
        agent = self._as_pod(caller, pool_id, name, "a heartbeat")
        now = self._clock()
        async with self._store.unit_of_work() as uow:
            heard = await uow.pods.heartbeat(agent.pod_id, now=now, draining=draining)
            # An ended pod's agent: nothing updated, and its state and tasks read as they are.
            state = (await self._pod(uow, agent)).state if heard is None else heard.state
            cancel: list[str] = []
            if heard is None or heard.cancel_requested:
                cancel = await uow.tasks.cancel_requested_on(agent.pod_id)
            drain = state is PodState.draining or draining
            return HeartbeatAnswer(cancel=cancel, release=[], drain=drain)

    async def claim(
        self,
        caller: AgentCaller,
        pool_id: str,
        name: str,
        *,
        free_slots: list[int],
        reserved_slots: list[int],
        wait_seconds: float,
    ) -> ClaimAnswer:
        """A long poll, woken by what the dispatcher (or a cancel, an approval, an expired
        reservation) signals for the pod; the queue is probed only when the agent offers a
        free slot and something may be queued (``Dispatcher.fill``)."""
        agent = self._as_pod(caller, pool_id, name, "a claim")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait_seconds
        while True:
            woken = self._notifier.arm(Signal.pod(agent.pod_id))
            if free_slots:
                await self._dispatcher.fill(pool_id)
            answer = await self._answer(agent, free_slots, reserved_slots)
            remaining = deadline - loop.time()
            if not answer.is_empty() or remaining <= 0 or self._notifier.closing:
                return answer
            await self._notifier.wait(woken, seconds=remaining)
            if not woken.is_set():
                return answer  # its time is up, and nothing was signalled for it meanwhile
            if self._notifier.closing:  # the server stops: the agent asks again elsewhere
                return await self._answer(agent, free_slots, reserved_slots)

    async def _answer(
        self, agent: RegisteredAgent, free_slots: list[int], reserved_slots: list[int]
    ) -> ClaimAnswer:
        """From the pod's tasks as the dispatcher wrote them (one read of those the answer is
        about: the task a slot holds says what the slot is), after the heartbeat a claim also
        is."""
        now = self._clock()
        assignments: list[Assignment] = []
        release: list[str] = []
        async with self._store.unit_of_work() as uow:
            heard = await uow.pods.heartbeat(agent.pod_id, now=now, draining=False)
            slots = len((await self._pod(uow, agent)).slots) if heard is None else heard.slots
            offered = set(free_slots) | set(reserved_slots)
            if unknown := sorted(i for i in offered if i >= slots):
                raise Invalid("bad claim", [Issue("free_slots", f"no slot {unknown[0]}")])
            held = await uow.tasks.to_answer(agent.pod_id, sorted(offered))
            holder = {t.slot_index: t for t in held if t.slot_index is not None}
            for index in reserved_slots:
                task = holder.get(index)
                if task is None or task.status is not TaskStatus.awaiting_approval:
                    release += await _ended_reservation(uow, agent.pod_id, index, task)
            for task in sorted(held, key=lambda t: t.slot_index or 0):
                if task.status is not TaskStatus.running:
                    continue
                # Offered slots are answered again (a lost answer); a step placed in a slot
                # that came free while this claim was already waiting is answered at once.
                if task.slot_index in offered or task.step_started_at is None:
                    assignments.append(assignment(task, new_workdir=task.current_step == 0))
                if task.step_started_at is None:
                    await self._deliver(uow, task, now=now)
            cancel = [t.id for t in held if t.status is TaskStatus.running and t.cancel_requested]
        return ClaimAnswer(assignments=assignments, cancel=cancel, release=release)

    @staticmethod
    async def _deliver(uow: UnitOfWork, task: Task, *, now: datetime) -> None:
        """The step is handed over: its dispatch latency runs from when it got its slot (the
        dispatcher's start or the approval, the task's last write) to now."""
        if await uow.apply(transitions.delivered(task, now=now)):
            waited = metrics.seconds_between(task.updated_at, now)
            pool = metrics.pool_names.label(task.pool_id)
            uow.after_commit(lambda: metrics.observe(metrics.DISPATCH_LATENCY, waited, pool=pool))

    async def log(
        self,
        caller: AgentCaller,
        pool_id: str,
        task_id: str,
        *,
        step: int,
        chunks: Sequence[OutputChunk],
    ) -> None:
        """Chunks of the running step's output, stored in one INSERT (a chunk stored before is
        left as it is)."""
        agent = self._tokens.require_agent(caller, pool_id, "posting logs")
        async with self._store.unit_of_work() as uow:
            task = await self._own_task(uow, agent, task_id, step)
            if task.status is not TaskStatus.running:
                raise Conflict(f"task {task_id} is {task.status}: it takes no more logs")
            if step != task.current_step:
                raise Conflict(
                    f"step {step} of task {task_id} is not running (step {task.current_step} is): "
                    "it takes no logs"
                )
            await uow.tasks.add_logs(task_id, step=step, chunks=chunks, now=self._clock())
            uow.signal(Signal.task(task_id))  # its followers read on

    async def result(
        self,
        caller: AgentCaller,
        pool_id: str,
        task_id: str,
        *,
        step_index: int,
        status: StepStatus,
        exit_code: int | None,
        message: str,
        then: bool = False,
    ) -> ResultAnswer:
        """The step's result, applied through the gate. With ``then`` (the agent takes a new
        task with the answer), a slot this frees is offered to the pool's queue before the
        answer, and a task put there is handed over in it: under load a task then costs no
        claim round trip."""
        agent = self._tokens.require_agent(caller, pool_id, "posting a result")
        now = self._clock()
        async with self._store.unit_of_work() as uow:
            task = await self._own_task(uow, agent, task_id, step_index)
            if task.current_step != step_index or task.status is not TaskStatus.running:
                # Reported before (a retry after a lost answer): answer from the task's state.
                return self._answer_from_state(task, step_index)
            report = StepReport(step_index, status, exit_code=exit_code, message=message)
            hold = await self._hold_for_approval(uow, task, report)
            change = transitions.step_ended(task, report, reservation_ttl=hold, now=now)
            answer = await self._apply(uow, task, change)
        if then and answer.release and task.slot_index is not None:
            following = await self._refill(agent, task.pool_id, task.slot_index)
            if following is not None:
                return answer.model_copy(update={"then": following})
        self._after(task, answer)
        return answer

    async def _refill(self, agent: RegisteredAgent, pool_id: str, slot: int) -> Assignment | None:
        """Dispatch the pool now (if its queue may hold something) and wait for that pass; a
        task it put in ``slot`` of the agent's pod is marked delivered and returned, to go with
        the result's answer. Tasks placed elsewhere reach their agents' claims as always, and so
        does this one if the agent's waiting claim took it first (were both to hand it over,
        the agent's slot table runs it once: it knows the step already runs)."""
        if not self._dispatcher.may_have_queued(pool_id):
            return None
        await self._dispatcher.settle(pool_id)
        now = self._clock()
        async with self._store.unit_of_work() as uow:
            waiting = await uow.tasks.to_answer(agent.pod_id, [])  # not delivered, or cancelled
            task = next(
                (
                    t
                    for t in waiting
                    if t.slot_index == slot
                    and t.status is TaskStatus.running
                    and t.step_started_at is None
                ),
                None,
            )
            if task is None:
                return None
            await self._deliver(uow, task, now=now)
        return assignment(task, new_workdir=task.current_step == 0)

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
            assert isinstance(change.current_step, int)  # a continuation always moves on
            following = replace(task, current_step=change.current_step)  # as written: no re-read
            return ResultAnswer(
                next=assignment(following, new_workdir=False), reserve=False, release=False
            )
        if change.cause is Cause.awaits_approval:
            return ResultAnswer(next=None, reserve=True, release=False)
        return ResultAnswer(next=None, reserve=False, release=True)

    def _after(self, task: Task, answer: ResultAnswer) -> None:
        if answer.release and self._dispatcher.may_have_queued(task.pool_id):
            # A slot came free: queued work of the pool may go there now (after the answer).
            dispatch = asyncio.get_running_loop().create_task(self._dispatcher.fill(task.pool_id))
            self._background.add(dispatch)
            dispatch.add_done_callback(self._background.discard)

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
        if await uow.apply(change):
            uow.after_commit(lambda: metrics.tasks_lost(change.pool_id, metrics.STEP_GONE))

    def _as_pod(self, caller: AgentCaller, pool_id: str, name: str, call: str) -> RegisteredAgent:
        """The registered agent of pod ``name``: a credential speaks for its own pod only."""
        agent = self._tokens.require_agent(caller, pool_id, call)
        if agent.name != name:
            raise Forbidden(f"this credential is agent {agent.name}'s: it cannot act as {name}")
        return agent

    @staticmethod
    async def _pod(uow: UnitOfWork, agent: RegisteredAgent) -> Pod:
        pod = await uow.pods.get(agent.pod_id)
        if pod is None:
            raise NotFound(f"agent {agent.name} is not registered in {agent.pool_id}: register")
        return pod

    @staticmethod
    async def _own_task(uow: UnitOfWork, agent: RegisteredAgent, task_id: str, step: int) -> Task:
        """A task given to the agent's pod, with a step ``step``; 404 or 403 otherwise."""
        task = await require_task(uow, task_id)
        if task.pool_id != agent.pool_id:
            raise NotFound(f"task {task_id} not found in {agent.pool_id}")
        if task.pod_id != agent.pod_id:
            raise Forbidden(f"task {task_id} was not given to agent {agent.name}")
        if step >= len(task.steps):
            raise NotFound(f"task {task_id} has no step {step} (it has {len(task.steps)})")
        return task


def _registered(pool: Pool, known: Pod | None, *, now: datetime) -> None:
    """An agent registered for the first time: counted, and its Pod's start-up ends if
    slotpool recorded the Pod's creation (not a static agent's)."""
    metrics.pool_names.note(pool.pool_id, pool.name)
    metrics.AGENT_REGISTRATIONS.labels(pool=pool.name).inc()
    if known is not None and known.registered_at is None:
        phase = [metrics.StartupPhase.registered]
        metrics.pod_started(pool.pool_id, known.created_at, phase, now=now)


async def _ended_reservation(
    uow: UnitOfWork, pod_id: int, slot: int, holder: Task | None
) -> list[str]:
    """The task whose reservation the agent still holds on ``slot`` though it ended (expired,
    cancelled): the last task on the slot if it is final, the slot idle or given since to
    another task, ``holder`` (a cancel and a new task's dispatch may both come before the
    agent's claim)."""
    other_than = None if holder is None else holder.id
    last = await uow.tasks.last_on_slot(pod_id, slot, other_than=other_than)
    return [last.id] if last is not None and last.final else []
