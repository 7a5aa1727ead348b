"""The agent's supervisor: a few root tasks under one TaskGroup, as kopf runs its operator.

Root tasks: (re-)registration, the claim loop, the heartbeat loop, log shipping (the outbox), the
drain watcher, and one runner per busy slot. If any of them fails, the TaskGroup cancels the
others (a runner's cancellation kills its step's process group) and the agent exits non-zero:
half an agent that claims work it cannot report is worse than none. 401/403 exits with 2.

SIGTERM (``stop``) drains: no new claims, ``draining: true`` in heartbeats, running steps get
``drain_grace_seconds`` to finish (then they are cancelled), their results and logs are delivered,
and the agent exits 0 (1 if some could not be delivered in time).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

import httpx
import structlog

from slotpool.agent.client import REQUEST_TIMEOUT, Aborted, AgentClient, AuthError
from slotpool.agent.config import AgentConfig
from slotpool.agent.outbox import Outbox
from slotpool.agent.process import StepOutcome
from slotpool.agent.runner import SlotRunner
from slotpool.agent.slots import AlreadyRunning, SlotConflict, SlotStillBusy, SlotTable, Workdirs
from slotpool.domain.tasks import StepStatus
from slotpool.protocol import Assignment, ClaimAnswer, RegisterAnswer, RegisterRequest

log = structlog.get_logger(__name__)
EXIT_DRAINED = 0
EXIT_FAILED = 1
EXIT_UNAUTHORIZED = 2
_POLL_SECONDS = 0.05
_STILL_BUSY_SECONDS = 5.0  # a step given a slot whose last result's answer is still on its way


class _Finished(Exception):
    """Raised by the drain watcher to end the TaskGroup once the drain is complete."""

    def __init__(self, code: int) -> None:
        super().__init__(f"drained (exit code {code})")
        self.code = code


async def run_agent(config: AgentConfig, *, stop: asyncio.Event | None = None) -> int:
    """Run until ``stop`` is set and the drain is over; returns the process's exit code."""
    headers = {"User-Agent": f"slotpool-agent/{config.version}"}  # the bearer: AgentClient's
    async with httpx.AsyncClient(
        base_url=config.server_url, headers=headers, timeout=REQUEST_TIMEOUT
    ) as http:
        return await Agent(config, http=http, stop=stop or asyncio.Event()).run()


class Agent:
    def __init__(self, config: AgentConfig, *, http: httpx.AsyncClient, stop: asyncio.Event):
        self._config = config
        self._stop = stop
        self._slots = SlotTable(config.slots, Workdirs(config.work_dir, config.step_user))
        self._client = AgentClient(
            http,
            pool_id=config.pool_id,
            token=config.token,
            register_body=self._register_body,
            defaults=RegisterAnswer(
                name=config.name,
                heartbeat_seconds=config.heartbeat_seconds,
                claim_wait_seconds=config.claim_wait_seconds,
            ),
            retry=(config.retry_first_seconds, config.retry_max_seconds),
        )
        self._outbox = Outbox(self._client, takes_work=self._takes_work)
        self._runner = SlotRunner(
            slots=self._slots,
            reporter=self._outbox,
            grace_seconds=config.grace_seconds,
            user=config.step_user,
            passed_env=config.step_env,
        )
        self._server_drain = False
        self._claiming = True
        self._heartbeat_now = asyncio.Event()
        self._group: asyncio.TaskGroup | None = None
        self._claim_task: asyncio.Task[None] | None = None

    async def run(self) -> int:
        self._config.work_dir.mkdir(parents=True, exist_ok=True)
        log.info("agent starts", name=self._config.name, slots=self._config.slots)
        try:
            async with asyncio.TaskGroup() as group:
                self._group = group
                group.create_task(self._client.keep_registered(), name="register")
                group.create_task(self._heartbeat_loop(), name="heartbeat")
                group.create_task(self._outbox.ship(), name="log shipping")
                self._claim_task = group.create_task(self._claim_loop(), name="claim")
                group.create_task(self._drain_on_stop(), name="drain")
        except BaseExceptionGroup as failure:
            return _exit_code(failure)
        return EXIT_FAILED  # unreachable: the drain watcher always ends the group

    # -- claims ------------------------------------------------------------------------------

    async def _claim_loop(self) -> None:
        try:
            while not self._stop.is_set():
                self._slots.changed.clear()
                free, reserved = self._offer()
                if not free and not reserved:
                    # Nothing to offer: cancellations still come with heartbeats.
                    await _first_of(self._slots.changed.wait(), self._stop.wait())
                    continue
                try:
                    answer = await self._client.claim(
                        free=free, reserved=reserved, abort=self._stop
                    )
                except Aborted:
                    return
                await self._apply_claim(answer)
        finally:
            self._claiming = False
            self._heartbeat_now.set()  # a claim counts as a heartbeat: say again we drain

    def _takes_work(self) -> bool:
        """Whether a freed slot may get its next task with a result's answer: as a claim
        would offer it (not while draining)."""
        return self._claiming and not self._stop.is_set() and not self._server_drain

    def _offer(self) -> tuple[list[int], list[int]]:
        free = [] if self._server_drain else self._slots.free()
        return free, self._slots.reserved()

    async def _apply_claim(self, answer: ClaimAnswer) -> None:
        # Releases first (a slot may be handed out again), cancels last (an assignment may be
        # cancelled already).
        await self._apply(release=answer.release)
        for assignment in answer.assignments:
            self._start(assignment)
        await self._apply(cancel=answer.cancel)

    def _start(self, assignment: Assignment) -> None:
        try:
            cancellation = self._slots.begin(assignment)
        except AlreadyRunning:
            log.info("assignment already runs", task_id=assignment.task_id)
            return
        except SlotStillBusy as exc:
            # The answer to the slot's last result is on its way to the runner: the slot frees
            # in a moment, and the step starts then (the control plane counts it as delivered).
            log.info("slot still busy; starts once free", task_id=assignment.task_id, err=str(exc))
            assert self._group is not None
            self._group.create_task(
                self._start_when_free(assignment), name=f"slot {assignment.slot} next"
            )
            return
        except SlotConflict as exc:
            log.error("assignment refused", task_id=assignment.task_id, error=str(exc))
            message = f"agent {self._client.settings.name} could not take it: {exc}"
            outcome = StepOutcome(StepStatus.failed, None, message)
            self._outbox.submit(assignment.task_id, assignment.step_index, outcome)
            return
        assert self._group is not None
        self._group.create_task(
            self._runner.run(assignment, cancellation), name=f"slot {assignment.slot}"
        )

    async def _start_when_free(self, assignment: Assignment) -> None:
        def settled() -> bool:  # free, or given this step by a later claim meanwhile
            running = {r.task_id for r in self._slots.running()}
            return assignment.slot in self._slots.free() or assignment.task_id in running

        if await _until(settled, _STILL_BUSY_SECONDS):
            self._start(assignment)
            return
        # Not the crossing of a result and a claim: the control plane answers the step again
        # once a claim offers the slot.
        log.warning("slot stayed busy; left for a later claim", task_id=assignment.task_id)

    async def _apply(self, *, cancel: Sequence[str] = (), release: Sequence[str] = ()) -> None:
        for task_id in release:
            await self._slots.release(task_id)
        for task_id in cancel:
            self._slots.cancel(task_id, "cancelled on request")

    # -- heartbeats --------------------------------------------------------------------------

    async def _heartbeat_loop(self) -> NoReturn:
        while True:
            self._heartbeat_now.clear()
            answer = await self._client.heartbeat(
                self._slots.running(), draining=self._stop.is_set()
            )
            await self._apply(cancel=answer.cancel, release=answer.release)
            self._set_server_drain(answer.drain)
            interval = self._client.settings.heartbeat_seconds
            await _first_of(self._heartbeat_now.wait(), within=interval)

    def _set_server_drain(self, drain: bool) -> None:
        if drain != self._server_drain:
            log.info("control plane drain", drain=drain)
            self._server_drain = drain
            self._slots.changed.set()

    def _register_body(self, credential: str) -> RegisterRequest:
        return RegisterRequest(
            name=self._client.settings.name,
            slots=self._config.slots,
            version=self._config.version,
            running=self._slots.running(),
            pod_uid=self._config.pod_uid,
            credential=credential,
        )

    # -- drain -------------------------------------------------------------------------------

    async def _drain_on_stop(self) -> NoReturn:
        await self._stop.wait()
        log.info("draining", running=self._runner.executing, pending=len(self._outbox))
        self._heartbeat_now.set()
        if not await _until(self._steps_done, self._config.drain_grace_seconds):
            log.warning("drain grace period over: cancelling running steps")
            self._slots.cancel_all("the agent shut down: drain grace period over")
            if self._claim_task is not None:
                self._claim_task.cancel()
        flush = self._config.grace_seconds + self._config.flush_seconds
        if await _until(self._all_delivered, flush):
            raise _Finished(EXIT_DRAINED)
        log.error(
            "drained without delivering everything",
            running=self._slots.running(),
            undelivered=len(self._outbox),
        )
        raise _Finished(EXIT_FAILED)

    def _steps_done(self) -> bool:
        return not self._claiming and self._runner.executing == 0

    def _all_delivered(self) -> bool:
        return self._steps_done() and not self._slots.running() and not len(self._outbox)


def _exit_code(failure: BaseExceptionGroup[BaseException]) -> int:
    errors = list(_leaves(failure))
    if any(isinstance(e, AuthError) for e in errors):
        error = next(e for e in errors if isinstance(e, AuthError))
        log.error("the control plane refused the agent's token: fix the token", error=str(error))
        return EXIT_UNAUTHORIZED
    crashes = [e for e in errors if not isinstance(e, _Finished)]
    for crash in crashes:
        log.error("agent stopped: a root task failed", exc_info=crash)
    finished = [e for e in errors if isinstance(e, _Finished)]
    return EXIT_FAILED if crashes or not finished else finished[0].code


def _leaves(group: BaseExceptionGroup[BaseException]) -> list[BaseException]:
    leaves: list[BaseException] = []
    for error in group.exceptions:
        leaves.extend(_leaves(error) if isinstance(error, BaseExceptionGroup) else [error])
    return leaves


async def _first_of(*waits: Any, within: float | None = None) -> None:
    """Wait until the first of ``waits`` is done (or ``within`` seconds), cancelling the rest."""
    tasks = [asyncio.ensure_future(w) for w in waits]
    try:
        await asyncio.wait(tasks, timeout=within, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()


async def _until(condition: Callable[[], bool], seconds: float) -> bool:
    """Poll ``condition`` for up to ``seconds``; whether it became true."""
    deadline = asyncio.get_running_loop().time() + seconds
    while not condition():
        if asyncio.get_running_loop().time() >= deadline:
            return False
        await asyncio.sleep(_POLL_SECONDS)
    return True
