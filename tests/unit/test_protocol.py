"""The agent protocol's models: what the control plane serialises is what the agent parses, the
wire is what it always was, answers take unknown fields and requests refuse them."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError

from slotpool.agent.client import parse
from slotpool.domain.tasks import StepSpec, StepStatus, Task, TaskStatus
from slotpool.protocol import (
    AssignedStep,
    Assignment,
    ClaimAnswer,
    ClaimRequest,
    HeartbeatAnswer,
    HeartbeatRequest,
    LogChunk,
    ProtocolError,
    RegisterAnswer,
    RegisterRequest,
    ResultAnswer,
    RunningStep,
    StepResult,
    assignment,
)

TASK = "task-aaaaaaaaaaaaaaaa"
NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)


def task_of(
    *steps: StepSpec, current: int = 0, slot: int | None = 1, env: dict[str, str] | None = None
) -> Task:
    return Task(
        id=TASK,
        pool_id="pool-test",
        name="t",
        status=TaskStatus.running,
        env=env or {},
        labels={},
        steps=steps,
        results=(),
        current_step=current,
        pod_id=1,
        pod_name="agent-0",
        slot_index=slot,
        cancel_requested=False,
        reason="",
        created_by="admin",
        created_at=NOW,
        started_at=NOW,
        step_started_at=None,
        finished_at=None,
        reserved_until=None,
        updated_at=NOW,
    )


def wire_before(task: Task, *, new_workdir: bool) -> dict[str, Any]:
    """The assignment as the control plane sent it before the protocol had models: the wire
    must not change, so that agents of that version keep working."""
    step = task.steps[task.current_step]
    return {
        "task_id": task.id,
        "slot": task.slot_index,
        "step_index": task.current_step,
        "step": step.model_dump(mode="json", exclude_none=True, exclude={"requires_approval"}),
        "env": dict(task.env),
        "new_workdir": new_workdir,
    }


def sent(answer: BaseModel) -> Any:
    """What goes over the wire: FastAPI dumps the response model in JSON mode, then to text."""
    return json.loads(json.dumps(answer.model_dump(mode="json")))


@pytest.mark.parametrize(
    "step",
    [
        StepSpec(name="main", run="echo hello"),
        StepSpec(command=["terraform", "plan"]),
        StepSpec(name="apply", run="make", requires_approval=True, timeout_seconds=60),
        StepSpec(name="argv", command=["sh", "-c", "true"], timeout_seconds=1),
    ],
)
def test_an_assignment_goes_out_as_it_always_did(step: StepSpec) -> None:
    task = task_of(step, env={"GREETING": "hello"})
    wire = sent(assignment(task, new_workdir=True))
    expected = wire_before(task, new_workdir=True)
    assert wire == expected
    assert json.dumps(wire) == json.dumps(expected)  # the same keys in the same order
    assert "requires_approval" not in wire["step"]
    assert None not in wire["step"].values()  # unused keys are left out, never null


# Text as a task's submitter may give it: anything but NUL and lone surrogates (domain.text).
texts = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=20)
ways_to_run = st.fixed_dictionaries({"run": texts.filter(bool)}) | st.fixed_dictionaries(
    {"command": st.lists(texts, min_size=1, max_size=4)}
)
steps = st.builds(
    lambda how, **rest: StepSpec(**how, **rest),
    ways_to_run,
    name=texts,
    requires_approval=st.booleans(),
    timeout_seconds=st.none() | st.integers(1, 7 * 86_400),
)


@given(
    step=steps,
    env=st.dictionaries(st.from_regex(r"\A[A-Z][A-Z0-9_]{0,8}\Z"), st.text(max_size=10)),
    slot=st.integers(0, 63),
    new_workdir=st.booleans(),
)
def test_what_the_control_plane_sends_the_agent_parses(
    step: StepSpec, env: dict[str, str], slot: int, new_workdir: bool
) -> None:
    task = task_of(step, slot=slot, env=env)
    served = assignment(task, new_workdir=new_workdir)
    assert sent(served) == wire_before(task, new_workdir=new_workdir)
    for answer in (
        ClaimAnswer(assignments=[served], cancel=[TASK], release=["task-bbbbbbbbbbbbbbbb"]),
        ResultAnswer(next=served, reserve=False, release=False),
    ):
        assert parse(type(answer), sent(answer)) == answer
    argv = parse(ClaimAnswer, sent(ClaimAnswer(assignments=[served]))).assignments[0].argv
    assert argv == (("/bin/sh", "-c", step.run) if step.run else tuple(step.command or ()))


@pytest.mark.parametrize(
    ("answer", "wire"),
    [
        (
            RegisterAnswer(name="agent-0", heartbeat_seconds=5, claim_wait_seconds=25),
            {"name": "agent-0", "heartbeat_seconds": 5, "claim_wait_seconds": 25},
        ),
        (
            HeartbeatAnswer(cancel=[TASK], release=[], drain=True),
            {"cancel": [TASK], "release": [], "drain": True},
        ),
        (ClaimAnswer(), {"assignments": [], "cancel": [], "release": []}),
        (
            ResultAnswer(next=None, reserve=True, release=False),
            {"next": None, "reserve": True, "release": False, "then": None},
        ),
    ],
)
def test_every_answer_keeps_its_wire_and_round_trips(answer: BaseModel, wire: Any) -> None:
    assert json.dumps(sent(answer)) == json.dumps(wire)  # whole seconds stay 5, not 5.0
    assert parse(type(answer), wire) == answer


def test_a_result_answer_without_a_new_task_is_one_of_the_previous_version() -> None:
    """A control plane of the previous version sends no ``then``: the agent reads none."""
    answer = parse(ResultAnswer, {"next": None, "reserve": False, "release": True})
    assert answer == ResultAnswer(release=True, then=None)


def test_an_agent_takes_fractional_seconds() -> None:
    answer = parse(
        RegisterAnswer, {"name": "a", "heartbeat_seconds": 0.2, "claim_wait_seconds": 0.5}
    )
    assert (answer.heartbeat_seconds, answer.claim_wait_seconds) == (0.2, 0.5)


def test_an_older_agent_ignores_fields_a_newer_control_plane_adds() -> None:
    step = {"name": "main", "run": "echo hi", "shell": "bash"}
    item = {
        "task_id": TASK,
        "slot": 0,
        "step_index": 0,
        "step": step,
        "env": {},
        "new_workdir": True,
        "priority": 3,
    }
    claim = parse(ClaimAnswer, {"assignments": [item], "cancel": [], "release": [], "x": 1})
    assert claim.assignments[0].step == {"name": "main", "run": "echo hi"}
    assert claim.assignments[0].argv == ("/bin/sh", "-c", "echo hi")
    result = parse(ResultAnswer, {"next": item, "reserve": False, "release": False, "y": []})
    assert result.next == claim.assignments[0]
    beat = parse(HeartbeatAnswer, {"cancel": [], "release": [], "drain": False, "z": None})
    assert beat == HeartbeatAnswer()


GOOD_ITEM: dict[str, Any] = {
    "task_id": TASK,
    "slot": 0,
    "step_index": 0,
    "step": {"name": "s", "run": "true"},
    "env": {},
    "new_workdir": False,
}


def test_a_step_sent_without_a_name_is_unnamed() -> None:
    # The control plane always names a step; the protocol never required that of others.
    unnamed = parse(Assignment, {**GOOD_ITEM, "step": {"command": ["make"]}})
    assert unnamed.step == {"name": "", "command": ["make"]}
    assert unnamed.argv == ("make",)


@pytest.mark.parametrize(
    ("change", "why"),
    [
        ({"slot": True}, "a bool is no slot number"),
        ({"slot": "0"}, "nor is a string"),
        ({"slot": None}, "an assignment has a slot"),
        ({"env": {"A": 1}}, "env maps strings to strings"),
        ({"step": {"name": "s"}}, "a step runs one way"),
        ({"step": {"name": "s", "run": "a", "command": ["b"]}}, "and only one"),
        ({"step": {"name": "s", "command": []}}, "an empty argv runs nothing"),
        ({"step": {"name": "s", "run": "a", "timeout_seconds": "5"}}, "seconds are a number"),
        ({"new_workdir": 1}, "new_workdir is a bool"),
    ],
)
def test_an_answer_that_does_not_fit_the_protocol_is_a_protocol_error(
    change: dict[str, Any], why: str
) -> None:
    with pytest.raises(ProtocolError):
        parse(ClaimAnswer, {"assignments": [{**GOOD_ITEM, **change}]})
    assert parse(ClaimAnswer, {"assignments": [GOOD_ITEM]}).assignments, why


def test_a_claim_answer_with_no_list_of_assignments_is_a_protocol_error() -> None:
    with pytest.raises(ProtocolError, match="ClaimAnswer"):
        parse(ClaimAnswer, {"assignments": "not a list"})
    with pytest.raises(ProtocolError):
        parse(ResultAnswer, ["not", "an", "object"])


@pytest.mark.parametrize(
    "request_model",
    [
        lambda **x: RegisterRequest(name="agent-0", slots=1, **x),
        lambda **x: HeartbeatRequest(**x),
        lambda **x: ClaimRequest(**x),
        lambda **x: LogChunk(step_index=0, seq=0, data="", **x),
        lambda **x: StepResult(status=StepStatus.succeeded, **x),
        lambda **x: RunningStep(task_id=TASK, step_index=0, slot=0, **x),
    ],
)
def test_requests_refuse_fields_they_do_not_know(request_model: Any) -> None:
    request_model()
    with pytest.raises(ValidationError, match="extra"):
        request_model(unknown=1)


def test_requests_go_out_as_they_always_did() -> None:
    running = [RunningStep(task_id=TASK, step_index=2, slot=1)]
    register = RegisterRequest(name="agent-0", slots=2, version="1.0", running=running)
    assert register.model_dump(mode="json") == {
        "name": "agent-0",
        "slots": 2,
        "version": "1.0",
        "running": [{"task_id": TASK, "step_index": 2, "slot": 1}],
    }
    assert HeartbeatRequest(running=[], draining=True).model_dump(mode="json") == {
        "running": [],
        "draining": True,
    }
    claim = ClaimRequest(free_slots=[0], reserved_slots=[1], wait_seconds=25.0)
    assert claim.model_dump(mode="json") == {
        "free_slots": [0],
        "reserved_slots": [1],
        "wait_seconds": 25.0,
    }
    assert StepResult(status=StepStatus.failed, exit_code=3, message="m").model_dump(
        mode="json"
    ) == {
        "status": "failed",
        "exit_code": 3,
        "message": "m",
    }
    assert LogChunk(step_index=0, seq=1, data="x").model_dump(mode="json") == {
        "step_index": 0,
        "seq": 1,
        "data": "x",
    }


def test_a_task_without_a_slot_cannot_be_assigned() -> None:
    with pytest.raises(ValueError, match="holds no slot"):
        assignment(task_of(StepSpec(run="x"), slot=None), new_workdir=True)


def test_the_next_step_runs_in_the_same_slot_with_its_own_step() -> None:
    task = task_of(StepSpec(run="plan"), StepSpec(command=["apply"]), current=1, slot=3)
    following = assignment(task, new_workdir=False)
    assert (following.slot, following.step_index, following.new_workdir) == (3, 1, False)
    assert following.step == AssignedStep(name="", command=["apply"])
    assert following.argv == ("apply",)
    assert isinstance(following, Assignment)


def test_the_largest_log_chunk_fits_the_smallest_request_limit() -> None:
    """Every character JSON-escaped (``\\u0001``: six bytes), as the agent's client sends it."""
    from slotpool.agent.process import CHUNK_BYTES
    from slotpool.protocol import MAX_LOG_CHUNK
    from slotpool.settings import MIN_REQUEST_BYTES

    chunk = LogChunk(step_index=0, seq=0, data="\x01" * MAX_LOG_CHUNK)
    assert CHUNK_BYTES < MAX_LOG_CHUNK  # what the agent sends at most, decoded
    assert len(json.dumps(chunk.model_dump(mode="json")).encode()) < MIN_REQUEST_BYTES
