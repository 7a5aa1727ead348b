"""One busy slot: run a task's step, report its result, and follow the answer.

The answer decides what the slot does next: run the task's next step at once (same slot, same
working directory), stay reserved while the task waits for an approval, or be released. The
runner only knows the ``Reporter`` it reports to, so it is tested with real processes and an
in-memory reporter, and runs in the agent with the ordered outbox.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Protocol

import structlog

from slotpool.agent.config import TOKEN
from slotpool.agent.process import Cancellation, StepOutcome, run_process
from slotpool.agent.slots import SlotTable, WorkdirError
from slotpool.domain.tasks import LogStream, StepStatus
from slotpool.protocol import Assignment, ResultAnswer

log = structlog.get_logger(__name__)


class Reporter(Protocol):
    def log(self, task_id: str, step_index: int, seq: int, data: str, stream: LogStream) -> None:
        """Queue one chunk of a step's output (never blocks)."""

    async def result(self, task_id: str, step_index: int, outcome: StepOutcome) -> ResultAnswer:
        """Deliver a step's result after its output; returns the control plane's answer."""


def step_environment(
    assignment: Assignment, base: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The agent's environment, the task's ``env``, and where the step runs. The pool token is
    left out: with it, a step could act as the agent (and claim other tasks of the pool)."""
    env = {k: v for k, v in (os.environ if base is None else base).items() if k != TOKEN}
    env.update(assignment.env)
    env["SLOTPOOL_TASK_ID"] = assignment.task_id
    env["SLOTPOOL_STEP_INDEX"] = str(assignment.step_index)
    env["SLOTPOOL_SLOT"] = str(assignment.slot)
    return env


class SlotRunner:
    def __init__(self, *, slots: SlotTable, reporter: Reporter, grace_seconds: float) -> None:
        self._slots = slots
        self._reporter = reporter
        self._grace = grace_seconds
        self.executing = 0  # steps whose process runs now (a drain waits for these)

    async def run(self, first: Assignment, cancellation: Cancellation) -> None:
        """Run ``first`` (already marked busy with ``cancellation``) and what follows it."""
        step: tuple[Assignment, Cancellation] | None = (first, cancellation)
        while step is not None:
            current, cancellation = step
            outcome = await self._execute(current, cancellation)
            answer = await self._reporter.result(current.task_id, current.step_index, outcome)
            log.info(
                "step reported",
                task_id=current.task_id,
                step_index=current.step_index,
                status=outcome.status.value,
            )
            step = await self._slots.end_step(current.slot, answer)

    async def _execute(self, assignment: Assignment, cancellation: Cancellation) -> StepOutcome:
        log.info("step starts", task_id=assignment.task_id, step_index=assignment.step_index)
        try:
            cwd = await self._slots.workdirs.prepare(assignment)
        except (WorkdirError, OSError) as exc:
            return StepOutcome(StepStatus.failed, None, str(exc))

        def emit(seq: int, data: str, stream: LogStream) -> None:
            self._reporter.log(assignment.task_id, assignment.step_index, seq, data, stream)

        self.executing += 1
        try:
            return await run_process(
                assignment.argv,
                cwd=cwd,
                env=step_environment(assignment),
                time_limit=assignment.step.get("timeout_seconds"),
                grace=self._grace,
                cancellation=cancellation,
                emit=emit,
            )
        finally:
            self.executing -= 1
