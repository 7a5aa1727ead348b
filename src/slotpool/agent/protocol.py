"""The agent protocol's messages (docs/agent-protocol.md) as typed values, parsed at the edge.

The agent reads what the control plane sends in one place, so the loops and the runner work with
checked dataclasses instead of dictionaries; an answer that does not fit the protocol raises
``ProtocolError`` (a bug on one side, which stops the agent rather than being guessed around).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from slotpool.domain.tasks import StepStatus

# Task ids become directory names: anything else could escape the work directory.
_SAFE_TASK_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
MAX_MESSAGE = 4000  # the control plane's limit for a result's message


class ProtocolError(Exception):
    """The control plane answered something the protocol does not allow."""


@dataclass(frozen=True)
class Step:
    name: str
    argv: tuple[str, ...]
    timeout_seconds: float | None


@dataclass(frozen=True)
class Assignment:
    task_id: str
    slot: int
    step_index: int
    step: Step
    env: Mapping[str, str] = field(default_factory=dict)
    new_workdir: bool = False


@dataclass(frozen=True)
class RunningStep:
    task_id: str
    step_index: int
    slot: int

    def as_json(self) -> dict[str, Any]:
        return {"task_id": self.task_id, "step_index": self.step_index, "slot": self.slot}


@dataclass(frozen=True)
class StepOutcome:
    status: StepStatus
    exit_code: int | None
    message: str

    def as_json(self) -> dict[str, Any]:
        message = self.message.replace("\x00", "\ufffd")[:MAX_MESSAGE]
        return {"status": self.status.value, "exit_code": self.exit_code, "message": message}


@dataclass(frozen=True)
class RegisterAnswer:
    name: str
    heartbeat_seconds: float
    claim_wait_seconds: float


@dataclass(frozen=True)
class HeartbeatAnswer:
    cancel: tuple[str, ...] = ()
    release: tuple[str, ...] = ()
    drain: bool = False


@dataclass(frozen=True)
class ClaimAnswer:
    assignments: tuple[Assignment, ...] = ()
    cancel: tuple[str, ...] = ()
    release: tuple[str, ...] = ()


@dataclass(frozen=True)
class ResultAnswer:
    next: Assignment | None = None
    reserve: bool = False
    release: bool = False


# A result the control plane refused outright (say the task is gone): nothing more to run.
RELEASED = ResultAnswer(release=True)


def safe_task_id(task_id: str) -> bool:
    return bool(_SAFE_TASK_ID.match(task_id))


def parse_register(body: Any, *, name: str, heartbeat: float, claim_wait: float) -> RegisterAnswer:
    data = _object(body, "register")
    return RegisterAnswer(
        name=_optional(data, "name", str) or name,
        heartbeat_seconds=float(_optional(data, "heartbeat_seconds", (int, float)) or heartbeat),
        claim_wait_seconds=float(_optional(data, "claim_wait_seconds", (int, float)) or claim_wait),
    )


def parse_heartbeat(body: Any) -> HeartbeatAnswer:
    data = _object(body, "heartbeat")
    return HeartbeatAnswer(
        cancel=_ids(data, "cancel"),
        release=_ids(data, "release"),
        drain=bool(_optional(data, "drain", bool)),
    )


def parse_claim(body: Any) -> ClaimAnswer:
    data = _object(body, "claim")
    items = _optional(data, "assignments", list) or []
    return ClaimAnswer(
        assignments=tuple(parse_assignment(item) for item in items),
        cancel=_ids(data, "cancel"),
        release=_ids(data, "release"),
    )


def parse_result(body: Any) -> ResultAnswer:
    data = _object(body, "result")
    following = data.get("next")
    return ResultAnswer(
        next=None if following is None else parse_assignment(following),
        reserve=bool(_optional(data, "reserve", bool)),
        release=bool(_optional(data, "release", bool)),
    )


def parse_assignment(body: Any) -> Assignment:
    data = _object(body, "assignment")
    env = _optional(data, "env", dict) or {}
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in env.items()):
        raise ProtocolError(f"assignment env must map strings to strings: {env!r}")
    return Assignment(
        task_id=_required(data, "task_id", str),
        slot=_required(data, "slot", int),
        step_index=_required(data, "step_index", int),
        step=_parse_step(_required(data, "step", dict)),
        env=dict(env),
        new_workdir=bool(_optional(data, "new_workdir", bool)),
    )


def _parse_step(data: dict[str, Any]) -> Step:
    run = _optional(data, "run", str)
    command = _optional(data, "command", list)
    if (run is None) == (command is None):
        raise ProtocolError(f"a step needs exactly one of run or command: {data!r}")
    if command is not None and not (command and all(isinstance(a, str) for a in command)):
        raise ProtocolError(f"a step's command must be a non-empty list of strings: {command!r}")
    argv = ("/bin/sh", "-c", run) if run is not None else tuple(command or ())
    timeout = _optional(data, "timeout_seconds", (int, float))
    return Step(
        name=_optional(data, "name", str) or "",
        argv=argv,
        timeout_seconds=float(timeout) if timeout else None,
    )


def _object(body: Any, what: str) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise ProtocolError(f"the {what} answer must be a JSON object, not {body!r}")
    return body


def _required(data: dict[str, Any], key: str, kind: type | tuple[type, ...]) -> Any:
    if key not in data:
        raise ProtocolError(f"missing {key!r} in {data!r}")
    return _optional(data, key, kind)


def _optional(data: dict[str, Any], key: str, kind: type | tuple[type, ...]) -> Any:
    value = data.get(key)
    kinds = kind if isinstance(kind, tuple) else (kind,)
    # bool is an int in Python; the protocol never means one for the other.
    wrong_bool = isinstance(value, bool) and bool not in kinds
    if value is not None and (wrong_bool or not isinstance(value, kinds)):
        raise ProtocolError(f"{key!r} has the wrong type in {data!r}")
    return value


def _ids(data: dict[str, Any], key: str) -> tuple[str, ...]:
    values: Sequence[Any] = _optional(data, key, list) or []
    if not all(isinstance(v, str) for v in values):
        raise ProtocolError(f"{key!r} must be a list of task ids: {values!r}")
    return tuple(values)
