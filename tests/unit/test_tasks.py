"""Task rules as tables and properties: what a task does after a step, where it is placed."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from slotpool.domain.pods import PodCapacity, PodState, place, state_from_runtime
from slotpool.domain.tasks import Next, StepSpec, StepStatus, TaskStatus, TaskSubmit, after_step

PLAN_APPLY = [StepSpec(run="plan"), StepSpec(run="apply", requires_approval=True)]
THREE = [StepSpec(run="a"), StepSpec(run="b"), StepSpec(run="c")]


@pytest.mark.parametrize(
    ("steps", "index", "outcome", "cancel", "expected"),
    [
        (THREE, 0, StepStatus.succeeded, False, (Next.continue_, TaskStatus.running, 1)),
        (THREE, 2, StepStatus.succeeded, False, (Next.finish, TaskStatus.succeeded, 2)),
        (THREE, 1, StepStatus.failed, False, (Next.finish, TaskStatus.failed, 1)),
        (THREE, 1, StepStatus.timed_out, False, (Next.finish, TaskStatus.timed_out, 1)),
        (THREE, 0, StepStatus.cancelled, False, (Next.finish, TaskStatus.cancelled, 0)),
        (THREE, 0, StepStatus.succeeded, True, (Next.finish, TaskStatus.cancelled, 0)),
        (
            PLAN_APPLY,
            0,
            StepStatus.succeeded,
            False,
            (Next.await_approval, TaskStatus.awaiting_approval, 1),
        ),
        (PLAN_APPLY, 1, StepStatus.succeeded, False, (Next.finish, TaskStatus.succeeded, 1)),
    ],
)
def test_after_step(
    steps: list[StepSpec], index: int, outcome: StepStatus, cancel: bool, expected: Any
) -> None:
    move = after_step(steps, index=index, outcome=outcome, cancel_requested=cancel)
    assert (move.next, move.status, move.step_index) == expected


def pod(pod_id: int, idle: tuple[int, ...], used: int, **kw: Any) -> PodCapacity:
    return PodCapacity(
        pod_id=pod_id,
        state=kw.get("state", PodState.ready),
        config_hash=kw.get("config_hash", "h1"),
        idle_slots=idle,
        used_slots=used,
    )


@pytest.mark.parametrize(
    ("pods", "expected"),
    [
        ([], None),
        ([pod(1, (), 4)], None),
        ([pod(1, (0, 1), 2), pod(2, (1, 2, 3), 1)], (1, 0)),  # fullest first
        ([pod(1, (3,), 3, config_hash="old"), pod(2, (0, 1), 2)], (2, 0)),  # current config first
        ([pod(1, (0,), 3, state=PodState.draining), pod(2, (2,), 0)], (2, 2)),  # never draining
        ([pod(1, (0,), 0, state=PodState.starting)], None),  # not registered yet
        ([pod(2, (0,), 1), pod(1, (0,), 1)], (1, 0)),  # ties: the oldest pod
    ],
)
def test_place(pods: list[PodCapacity], expected: tuple[int, int] | None) -> None:
    assert place(pods, current_hash="h1") == expected


capacities = st.lists(
    st.builds(
        PodCapacity,
        pod_id=st.integers(1, 50),
        state=st.sampled_from(list(PodState)),
        config_hash=st.sampled_from(["h1", "h2", None]),
        idle_slots=st.lists(st.integers(0, 7), unique=True, max_size=8).map(tuple),
        used_slots=st.integers(0, 8),
    ),
    max_size=6,
)


@given(capacities)
def test_place_only_ever_picks_an_idle_slot_of_a_ready_pod(pods: list[PodCapacity]) -> None:
    spot = place(pods, current_hash="h1")
    ready_with_room = [p for p in pods if p.state is PodState.ready and p.idle_slots]
    if spot is None:
        assert not ready_with_room
        return
    pod_id, slot = spot
    assert any(p.pod_id == pod_id and slot in p.idle_slots for p in ready_with_room)


def test_submit_forms() -> None:
    short = TaskSubmit.model_validate({"pool_id": "pool-" + "a" * 16, "command": "echo hi"})
    assert short.step_list() == [StepSpec(name="main", run="echo hi")]
    argv = TaskSubmit.model_validate({"pool_id": "pool-" + "a" * 16, "command": ["echo", "hi"]})
    assert argv.step_list()[0].command == ["echo", "hi"]
    with pytest.raises(ValidationError, match="either steps or command"):
        TaskSubmit.model_validate({"pool_id": "pool-" + "a" * 16})
    with pytest.raises(ValidationError, match="exactly one of run"):
        StepSpec.model_validate({"run": "a", "command": ["b"]})


@pytest.mark.parametrize("command", ["", []])
def test_an_empty_command_is_refused(command: Any) -> None:
    # Found by the contract run: an empty string became a step that could not be built (a 500).
    with pytest.raises(ValidationError):
        TaskSubmit.model_validate({"pool_id": "pool-" + "a" * 16, "command": command})


@pytest.mark.parametrize(
    ("current", "phase", "deleting", "expected"),
    [
        (None, "Pending", False, PodState.pending),
        (None, "Running", False, PodState.starting),
        (PodState.pending, "Running", False, PodState.starting),
        (PodState.starting, "Running", False, PodState.starting),
        (PodState.ready, "Running", False, PodState.ready),  # registered: stays ready
        (PodState.draining, "Running", False, PodState.draining),  # decided: not undone
        (PodState.ready, "Running", True, PodState.terminating),
        (None, "Pending", True, PodState.terminating),
        (PodState.ready, "Failed", False, PodState.failed),
        (PodState.ready, "Succeeded", False, PodState.failed),
        (PodState.failed, "Running", False, PodState.failed),  # retired stays retired
        (PodState.failed, "Running", True, PodState.failed),
    ],
)
def test_pod_state_from_what_the_runtime_reports(
    current: PodState | None, phase: str, deleting: bool, expected: PodState
) -> None:
    assert state_from_runtime(current, phase=phase, deleting=deleting) is expected
