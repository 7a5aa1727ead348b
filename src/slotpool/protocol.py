"""The agent wire protocol, defined once: every request an agent sends and every answer it gets.

docs/agent-protocol.md tells the story; these models are the contract. The control plane's routes
(``api/routes/agent.py``) read the requests as bodies and give the answers as response models, and
the agent builds its requests and parses the answers with the same classes: the two sides cannot
drift apart, and the OpenAPI contract types every answer down to the step an assignment carries.

Agents and control planes are deployed apart, so the two directions are read differently:

* requests stay strict (``extra="forbid"``): a misspelt field is a 422, never a value silently
  dropped;
* answers ignore fields they do not know, so a newer control plane may add one without stopping
  older agents, but are strict about the types of those they know: a wrong type is a bug on one
  side, and the agent stops rather than guess around it.

On the wire everything stays as the protocol always sent it: a step's optional parts (``run`` or
``command``, ``timeout_seconds``) are left out when unset, never sent as null, and whole seconds
stay whole numbers. It imports nothing of slotpool but the domain (an import-linter contract keeps
it so), so the agent shares it without pulling in the control plane.
"""

from __future__ import annotations

from typing import Annotated, Any, NotRequired, TypeAlias

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    model_serializer,
)

# pydantic reads a TypedDict from typing only on Python 3.12 and later.
from typing_extensions import TypedDict

from slotpool.domain.agent_identity import CREDENTIAL_PREFIX
from slotpool.domain.bounds import StrictModel
from slotpool.domain.config import PoolType
from slotpool.domain.tasks import MAX_STEPS, LogStream, OutputChunk, StepSpec, StepStatus, Task
from slotpool.domain.text import Text

AGENT_NAME_PATTERN = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"
MAX_SLOTS = 64
MAX_MESSAGE = 4000  # a result's message
MAX_CLAIM_WAIT = 30  # seconds a claim may be held open
# Characters of one log chunk: twice what the agent sends (64 KiB of output), and small enough
# that a chunk, even with every character JSON-escaped, fits the smallest request size limit.
MAX_LOG_CHUNK = 131_072
# Chunks in one batch of a step's output, and the characters of all of them together: a batch
# fits the smallest request size limit as one chunk does (the agent sends at most 64 KiB of
# output in a batch, in at most this many chunks).
MAX_LOG_BATCH = 1000
MAX_LOG_BATCH_CHARS = MAX_LOG_CHUNK
# An agent's credential (domain/agent_identity.py): as secrets.token_urlsafe(32) makes them.
CREDENTIAL_PATTERN = rf"^{CREDENTIAL_PREFIX}[A-Za-z0-9_-]{{43,128}}$"

# Whole seconds as the control plane's settings have them (sent as 5, not 5.0); an agent's own
# defaults, and a test's control plane, may use fractions.
Seconds: TypeAlias = int | float


class ProtocolError(Exception):
    """A message that does not fit the protocol: a bug on one side, not something to retry."""


class _Request(StrictModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _Answer(BaseModel):
    # Unknown fields are ignored (pydantic's default). The control plane always sends every
    # field, so the contract says so even where the agent would take a default.
    model_config = ConfigDict(
        strict=True, frozen=True, json_schema_serialization_defaults_required=True
    )


# -- requests and answers, call by call -------------------------------------------------------


class RunningStep(_Request):
    """A step an agent runs now: register and heartbeat list them."""

    task_id: str = Field(max_length=24)
    step_index: int = Field(ge=0, le=MAX_STEPS)
    slot: int = Field(ge=0, le=MAX_SLOTS - 1)


class RegisterRequest(_Request):
    """``POST /register``: at start (with the pool token) and after every reconnect (with the
    agent's credential), with what still runs."""

    name: str = Field(pattern=AGENT_NAME_PATTERN, max_length=253)
    slots: int = Field(ge=1, le=MAX_SLOTS)
    version: str = Field(default="", max_length=64)
    running: list[RunningStep] = Field(default_factory=list, max_length=MAX_SLOTS)
    pod_uid: str | None = Field(
        default=None,
        max_length=128,
        description="The pod's uid (SLOTPOOL_POD_UID): what proves an agent of a k8s or local "
        "pool is the one slotpool started. Static agents have none.",
    )
    credential: str | None = Field(
        default=None,
        pattern=CREDENTIAL_PATTERN,
        description="The agent's own credential, made by the agent at start (spa_ and 43 or "
        "more random URL-safe characters) and kept in its memory only: the first registration "
        "binds it to the agent, and every later call shows it as bearer instead of the pool "
        "token. Required when the bearer is the pool token.",
    )

    @model_serializer(mode="wrap")
    def _without_absent_proofs(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        # Left out when unset, never sent as null: the request stays as it always was.
        body: dict[str, Any] = handler(self)
        return {k: v for k, v in body.items() if v is not None or k not in _PROOFS}


_PROOFS = frozenset({"pod_uid", "credential"})


class RegisterAnswer(_Answer):
    name: str
    heartbeat_seconds: Seconds
    claim_wait_seconds: Seconds


class HeartbeatRequest(_Request):
    """``POST /pods/{name}/heartbeat``."""

    running: list[RunningStep] = Field(default_factory=list, max_length=MAX_SLOTS)
    draining: bool = False


class HeartbeatAnswer(_Answer):
    cancel: list[str] = Field(default_factory=list, description="Stop these tasks' steps.")
    release: list[str] = Field(
        default_factory=list, description="Forget these tasks: free the slot, delete the workdir."
    )
    drain: bool = Field(default=False, description="Take no new work.")


class ClaimRequest(_Request):
    """``POST /pods/{name}/claim``: a long poll for work in the slots offered."""

    free_slots: list[int] = Field(default_factory=list, max_length=MAX_SLOTS)
    reserved_slots: list[int] = Field(default_factory=list, max_length=MAX_SLOTS)
    wait_seconds: float = Field(default=0, ge=0, le=MAX_CLAIM_WAIT)


class AssignedStep(TypedDict):
    """The step to run, as the task's submitter gave it. A TypedDict, not a model: the keys a
    step does not use are absent on the wire (never null), and the contract says so."""

    name: str
    run: NotRequired[Annotated[str, Field(min_length=1)]]  # a shell command line (/bin/sh -c)
    command: NotRequired[Annotated[list[str], Field(min_length=1)]]  # an argv list
    timeout_seconds: NotRequired[Annotated[int, Field(ge=1)]]


def _unnamed_is_empty(step: object) -> object:
    # The control plane always names a step (""), but the protocol never required it of others.
    if isinstance(step, dict) and "name" not in step:
        return {"name": "", **step}
    return step


def _runs_one_way(step: AssignedStep) -> AssignedStep:
    if ("run" in step) == ("command" in step):
        raise ValueError("a step needs exactly one of run or command")
    return step


class Assignment(BaseModel):
    """A task's step put in one of the agent's slots."""

    # Not an _Answer: its fields are all required anyway, and pydantic would apply that config's
    # "defaults are required" to the step's absent keys too.
    model_config = ConfigDict(strict=True, frozen=True)

    task_id: str
    slot: int
    step_index: int
    step: Annotated[AssignedStep, BeforeValidator(_unnamed_is_empty), AfterValidator(_runs_one_way)]
    env: dict[str, str]
    new_workdir: bool = Field(
        description="True for a task's first step; later steps reuse the slot's directory."
    )

    @property
    def argv(self) -> tuple[str, ...]:
        """How the step runs: ``run`` through ``/bin/sh -c``, ``command`` as it is."""
        run = self.step.get("run")
        return ("/bin/sh", "-c", run) if run is not None else tuple(self.step.get("command", ()))


class ClaimAnswer(_Answer):
    assignments: list[Assignment] = Field(default_factory=list)
    cancel: list[str] = Field(default_factory=list)
    release: list[str] = Field(default_factory=list)

    def is_empty(self) -> bool:
        """Nothing to say yet: a long poll goes on waiting."""
        return not (self.assignments or self.cancel or self.release)


class BatchedChunk(_Request):
    """One chunk of a ``LogBatch``. ``stream`` is left out on the wire for stdout."""

    seq: int = Field(ge=0, le=2**31 - 1)
    data: Text = Field(max_length=MAX_LOG_CHUNK)
    stream: LogStream = LogStream.stdout

    @model_serializer(mode="wrap")
    def _stdout_unsaid(self, handler: SerializerFunctionWrapHandler) -> dict[str, object]:
        dumped: dict[str, object] = handler(self)
        if self.stream is LogStream.stdout:
            dumped.pop("stream", None)
        return dumped

    def output(self) -> OutputChunk:
        return OutputChunk(self.seq, self.data, self.stream)


def _one_request_of_distinct_chunks(chunks: list[BatchedChunk]) -> list[BatchedChunk]:
    chars = sum(len(chunk.data) for chunk in chunks)
    if chars > MAX_LOG_BATCH_CHARS:
        raise ValueError(
            f"the chunks hold {chars} characters together; at most {MAX_LOG_BATCH_CHARS} are "
            "accepted in one batch: send the rest in another"
        )
    first: dict[int, int] = {}
    for index, chunk in enumerate(chunks):
        if chunk.seq in first:
            raise ValueError(
                f"chunks {first[chunk.seq]} and {index} both have seq {chunk.seq}: each chunk "
                "of a step has its own"
            )
        first[chunk.seq] = index
    return chunks


class LogBatch(_Request):
    """``POST /tasks/{task_id}/steps/{step_index}/logs``: chunks of one step's output, of both
    streams, in the order they were read. ``seq`` counts from 0 per step (over both streams);
    a chunk sent twice (in this batch's retry, or in another batch) is stored once."""

    chunks: Annotated[
        list[BatchedChunk],
        Field(min_length=1, max_length=MAX_LOG_BATCH),
        AfterValidator(_one_request_of_distinct_chunks),
    ]


class LogChunk(BatchedChunk):
    """``POST /tasks/{task_id}/logs``: one chunk, as agents before batches send it (still
    taken, so that an agent of the previous version loses no output during an upgrade)."""

    step_index: int = Field(ge=0, le=MAX_STEPS)


class StepResult(_Request):
    """``POST /tasks/{task_id}/steps/{step_index}/result``."""

    status: StepStatus
    exit_code: int | None = Field(default=None, ge=-(2**31), le=2**31 - 1)
    message: Text = Field(default="", max_length=MAX_MESSAGE)


class ResultAnswer(_Answer):
    next: Assignment | None = Field(
        default=None, description="The task's next step, to run at once in the same slot."
    )
    reserve: bool = Field(
        default=False, description="Keep the slot and workdir: the task waits for an approval."
    )
    release: bool = Field(
        default=False, description="The task is over: free the slot, delete the workdir."
    )
    then: Assignment | None = Field(
        default=None,
        description=(
            "With release, only for an agent that asked (``?then=1``): a queued task put in the "
            "freed slot, to run at once there in a new working directory (no claim needed)."
        ),
    )


class AgentPoolView(_Answer):
    """``GET /pools/{pool_id}``: what an agent learns about its own pool."""

    pool_id: str
    name: str
    pool_type: PoolType
    slots_per_pod: int
    config_hash: str | None
    token_name: str  # the pool token's name; "" when an agent asks with its credential


# -- the control plane's side: a task's step as an assignment ----------------------------------


def assignment(task: Task, *, new_workdir: bool) -> Assignment:
    """The task's current step in the slot the task holds."""
    if task.slot_index is None:
        raise ValueError(f"task {task.id} holds no slot: its step cannot be assigned")
    return Assignment(
        task_id=task.id,
        slot=task.slot_index,
        step_index=task.current_step,
        step=assigned_step(task.steps[task.current_step]),
        env=dict(task.env),
        new_workdir=new_workdir,
    )


def assigned_step(spec: StepSpec) -> AssignedStep:
    """What the agent needs of a step: ``requires_approval`` is the control plane's business."""
    step = AssignedStep(name=spec.name)
    if spec.run is not None:
        step["run"] = spec.run
    if spec.command is not None:
        step["command"] = list(spec.command)
    if spec.timeout_seconds is not None:
        step["timeout_seconds"] = spec.timeout_seconds
    return step
