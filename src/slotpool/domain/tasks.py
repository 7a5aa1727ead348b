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
from typing import Annotated, Any, Self, TypeVar

from pydantic import (
    AfterValidator,
    ConfigDict,
    Discriminator,
    Field,
    StrictBool,
    StrictInt,
    Tag,
    field_validator,
    model_validator,
)

from slotpool.domain.bounds import (
    ARGV_TAG,
    LINE_TAG,
    StrictModel,
    at_most_bytes,
    at_most_entries,
    utf8_size,
)
from slotpool.domain.config import MAX_ARGS, MAX_ENV_VARS, EnvName, Labels
from slotpool.domain.pools import POOL_ID_PATTERN
from slotpool.domain.text import Text

# What one task may hold. A task's env and commands are stored with it and sent to an agent on
# every step: generous for real use, small enough that a task fits a 1 MiB request.
MAX_STEPS = 50
MAX_NAME = 200
MAX_STEP_BYTES = 131_072  # one step's command line (run, or its argv together)
MAX_COMMAND_BYTES = 524_288  # all steps' commands together
MAX_ENV_BYTES = 262_144  # the env's names and values together


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
# The statuses of a task that has not ended, in the order a task goes through them.
OPEN = (TaskStatus.queued, TaskStatus.running, TaskStatus.awaiting_approval)


class StepStatus(StrEnum):
    succeeded = "succeeded"
    failed = "failed"
    timed_out = "timed_out"
    cancelled = "cancelled"


class LogStream(StrEnum):
    """Which of a step's outputs a log chunk comes from."""

    stdout = "stdout"
    stderr = "stderr"


@dataclass(frozen=True)
class OutputChunk:
    """A chunk of a step's output as its agent sends it: ``seq`` counts from 0 per step."""

    seq: int
    data: str
    stream: LogStream = LogStream.stdout


@dataclass(frozen=True)
class LogEntry:
    """One stored chunk of a task's log; ``id`` orders a task's chunks as they were written."""

    id: int
    step_index: int
    seq: int
    stream: LogStream
    data: str
    at: datetime


class _Strict(StrictModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


T = TypeVar("T", str, list[str])


def command_size(command: str | Sequence[str]) -> int:
    return utf8_size([command] if isinstance(command, str) else command)


def _step_sized(command: T) -> T:
    at_most_bytes(MAX_STEP_BYTES, command_size(command))
    return command


def _env_sized(env: dict[str, str]) -> dict[str, str]:
    at_most_bytes(MAX_ENV_BYTES, utf8_size(env) + utf8_size(env.values()))
    return env


RunLine = Annotated[Text, Field(min_length=1), AfterValidator(_step_sized)]
Argv = Annotated[
    list[Text],
    Field(min_length=1, max_length=MAX_ARGS, fail_fast=True),
    AfterValidator(_step_sized),
]


def _command_shape(value: object) -> str | None:
    if isinstance(value, list):
        return ARGV_TAG
    return LINE_TAG if isinstance(value, str) else None


Command = Annotated[
    Annotated[Argv, Tag(ARGV_TAG)] | Annotated[RunLine, Tag(LINE_TAG)],
    Discriminator(
        _command_shape,
        custom_error_type="command_shape",
        custom_error_message="must be an argv list of strings or a shell command line (a string)",
    ),
]
TaskEnv = Annotated[dict[EnvName, Text], at_most_entries(MAX_ENV_VARS), AfterValidator(_env_sized)]


class StepSpec(_Strict):
    name: Annotated[Text, Field(max_length=MAX_NAME)] = ""
    run: RunLine | None = None
    command: Argv | None = None
    requires_approval: StrictBool = False
    timeout_seconds: StrictInt | None = Field(default=None, ge=1, le=7 * 86_400)

    @model_validator(mode="after")
    def _one_way_to_run(self) -> Self:
        if (self.run is None) == (self.command is None):
            raise ValueError("give exactly one of run (a shell command line) or command (argv)")
        return self

    @property
    def size(self) -> int:
        """Bytes of its command line (UTF-8)."""
        return command_size(self.run if self.run is not None else self.command or ())


class TaskSubmit(_Strict):
    """``{pool_id, name, env, labels, steps}``, or the short form ``{pool_id, command}``."""

    pool_id: Annotated[str, Field(pattern=POOL_ID_PATTERN)]
    name: Annotated[Text, Field(max_length=MAX_NAME)] = ""
    env: TaskEnv = Field(default_factory=dict)
    labels: Labels = Field(default_factory=dict)
    steps: Annotated[list[StepSpec], Field(min_length=1, max_length=MAX_STEPS)] | None = None
    command: Command | None = None

    @field_validator("steps")
    @classmethod
    def _steps_sized(cls, steps: list[StepSpec] | None) -> list[StepSpec] | None:
        at_most_bytes(MAX_COMMAND_BYTES, sum(step.size for step in steps or ()))
        return steps

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
