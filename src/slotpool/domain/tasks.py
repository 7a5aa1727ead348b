"""Tasks: what a submitter may ask for and the lifecycle of its steps.

Pure rules, so the dispatcher and the agent protocol can be reasoned about (and tested) without
a database: what follows a step's result (``after_step``). The changes a task's record goes
through, and what each does to its slot, are built on it in ``transitions.py``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Self

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, model_validator

from slotpool.domain.config import EnvName, LabelKey, LabelValue
from slotpool.domain.pools import POOL_ID_PATTERN
from slotpool.domain.text import Text

MAX_STEPS = 50


class TaskStatus(StrEnum):
    queued = "queued"
    running = "running"
    awaiting_approval = "awaiting_approval"
    succeeded = "succeeded"
    failed = "failed"
    cancelled = "cancelled"
    timed_out = "timed_out"
    lost = "lost"
    expired = "expired"


FINAL = frozenset(
    {
        TaskStatus.succeeded,
        TaskStatus.failed,
        TaskStatus.cancelled,
        TaskStatus.timed_out,
        TaskStatus.lost,
        TaskStatus.expired,
    }
)


class StepStatus(StrEnum):
    succeeded = "succeeded"
    failed = "failed"
    timed_out = "timed_out"
    cancelled = "cancelled"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class StepSpec(_Strict):
    name: Annotated[Text, Field(max_length=200)] = ""
    run: Annotated[Text, Field(min_length=1, max_length=100_000)] | None = None
    command: Annotated[list[Text], Field(min_length=1, max_length=1000)] | None = None
    requires_approval: StrictBool = False
    timeout_seconds: StrictInt | None = Field(default=None, ge=1, le=7 * 86_400)

    @model_validator(mode="after")
    def _one_way_to_run(self) -> Self:
        if (self.run is None) == (self.command is None):
            raise ValueError("give exactly one of run (a shell command line) or command (argv)")
        return self


class TaskSubmit(_Strict):
    """``{pool_id, name, env, labels, steps}``, or the short form ``{pool_id, command}``."""

    pool_id: Annotated[str, Field(pattern=POOL_ID_PATTERN)]
    name: Annotated[Text, Field(max_length=200)] = ""
    env: dict[EnvName, Text] = Field(default_factory=dict)
    labels: dict[LabelKey, LabelValue] = Field(default_factory=dict)
    steps: Annotated[list[StepSpec], Field(min_length=1, max_length=MAX_STEPS)] | None = None
    command: (
        Annotated[list[Text], Field(min_length=1)]
        | Annotated[Text, Field(min_length=1, max_length=100_000)]
        | None
    ) = None

    @model_validator(mode="after")
    def _steps_or_command(self) -> Self:
        if (self.steps is None) == (self.command is None):
            raise ValueError("give either steps or command (a task of one step), not both")
        return self

    def step_list(self) -> list[StepSpec]:
        if self.steps is not None:
            return list(self.steps)
        if isinstance(self.command, str):
            return [StepSpec(name="main", run=self.command)]
        return [StepSpec(name="main", command=self.command)]


class Next(StrEnum):
    continue_ = "continue"  # run the next step now, same slot
    await_approval = "await_approval"  # keep the slot reserved until someone approves
    finish = "finish"  # the task is over: free the slot


@dataclass(frozen=True)
class Transition:
    next: Next
    status: TaskStatus
    step_index: int


def after_step(
    steps: Sequence[StepSpec], *, index: int, outcome: StepStatus, cancel_requested: bool
) -> Transition:
    """What a task does once step ``index`` has ended with ``outcome``."""
    if outcome is not StepStatus.succeeded:
        return Transition(Next.finish, TaskStatus(outcome.value), index)
    if cancel_requested:
        return Transition(Next.finish, TaskStatus.cancelled, index)
    following = index + 1
    if following >= len(steps):
        return Transition(Next.finish, TaskStatus.succeeded, index)
    if steps[following].requires_approval:
        return Transition(Next.await_approval, TaskStatus.awaiting_approval, following)
    return Transition(Next.continue_, TaskStatus.running, following)


@dataclass(frozen=True)
class Task:
    id: str
    pool_id: str
    name: str
    status: TaskStatus
    env: dict[str, str]
    labels: dict[str, str]
    steps: tuple[StepSpec, ...]
    results: tuple[dict[str, Any], ...]
    current_step: int
    pod_id: int | None
    pod_name: str | None
    slot_index: int | None
    cancel_requested: bool
    reason: str
    created_by: str
    created_at: datetime
    started_at: datetime | None
    step_started_at: datetime | None
    finished_at: datetime | None
    reserved_until: datetime | None
    updated_at: datetime

    @property
    def final(self) -> bool:
        return self.status in FINAL
