"""One busy slot: run a task's step, report its result, and follow the answer.

The answer decides what the slot does next: run the task's next step at once (same slot, same
working directory), stay reserved while the task waits for an approval, or be released. The
runner only knows the ``Reporter`` it reports to, so it is tested with real processes and an
in-memory reporter, and runs in the agent with the ordered outbox.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Protocol

import structlog

from slotpool.agent.isolation import StepUser
from slotpool.agent.process import Cancellation, StepOutcome, run_process
from slotpool.agent.slots import SlotTable, WorkdirError
from slotpool.domain.tasks import OutputChunk, StepStatus
from slotpool.protocol import Assignment, ResultAnswer

log = structlog.get_logger(__name__)


class Reporter(Protocol):
    def log(self, task_id: str, step_index: int, chunks: Sequence[OutputChunk]) -> None:
        """Queue a batch of chunks of a step's output (never blocks)."""

    async def result(
        self, task_id: str, step_index: int, outcome: StepOutcome, *, then: bool = False
    ) -> ResultAnswer:
        """Deliver a step's result after its output; returns the control plane's answer.
        ``then``: the caller runs a new task the answer brings for the freed slot."""


# What every step gets of the agent's environment, if the agent has it.
BASE_VARIABLES = ("PATH", "HOME", "LANG", "LC_ALL", "TZ", "TMPDIR")


def step_environment(
    assignment: Assignment,
    passed: Mapping[str, str],
    *,
    home: Path | None = None,
    base: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """A clean environment: the base (``BASE_VARIABLES`` of the agent's), the agent's variables
    ``passed`` on (the pool's env), the task's ``env``, and which step this is. Never the rest
    of the agent's: its secrets (the pool token, its pod's uid) would make the step an agent.
    ``home``: HOME for a step user whose home is not the agent's (its working directory)."""
    agent = os.environ if base is None else base
    env = {name: agent[name] for name in BASE_VARIABLES if name in agent}
    env.setdefault("PATH", os.defpath)
    if home is not None:
        env["HOME"] = str(home)
    env.update(passed)
    env.update(assignment.env)
    env["SLOTPOOL_TASK_ID"] = assignment.task_id
    env["SLOTPOOL_STEP_INDEX"] = str(assignment.step_index)
    env["SLOTPOOL_SLOT"] = str(assignment.slot)
    return env


class SlotRunner:
    def __init__(
        self,
        *,
        slots: SlotTable,
        reporter: Reporter,
        grace_seconds: float,
        user: StepUser | None = None,
        passed_env: Mapping[str, str] | None = None,
    ) -> None:
        self._slots = slots
        self._reporter = reporter
        self._grace = grace_seconds
        self._user = user
        self._passed = dict(passed_env or {})
        self.executing = 0  # steps whose process runs now (a drain waits for these)

    async def run(self, first: Assignment, cancellation: Cancellation) -> None:
        """Run ``first`` (already marked busy with ``cancellation``) and what follows it."""
        step: tuple[Assignment, Cancellation] | None = (first, cancellation)
        while step is not None:
            current, cancellation = step
            outcome = await self._execute(current, cancellation)
            answer = await self._reporter.result(
                current.task_id, current.step_index, outcome, then=True
            )
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

        def emit(chunks: Sequence[OutputChunk]) -> None:
            self._reporter.log(assignment.task_id, assignment.step_index, chunks)

        self.executing += 1
        try:
            return await run_process(
                assignment.argv,
                cwd=cwd,
                env=step_environment(
                    assignment, self._passed, home=None if self._user is None else cwd
                ),
                user=self._user,
                time_limit=assignment.step.get("timeout_seconds"),
                grace=self._grace,
                cancellation=cancellation,
                emit=emit,
            )
        finally:
            self.executing -= 1
