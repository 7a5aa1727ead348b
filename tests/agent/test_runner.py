"""A slot runs a task's steps in one working directory and follows each result's answer."""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Sequence
from pathlib import Path

import pytest

from slotpool.agent.isolation import StepUser
from slotpool.agent.process import StepOutcome
from slotpool.agent.runner import BASE_VARIABLES, SlotRunner
from slotpool.agent.slots import AlreadyRunning, SlotConflict, SlotTable, Workdirs
from slotpool.domain.tasks import OutputChunk, StepStatus
from slotpool.protocol import AssignedStep, Assignment, ProtocolError, ResultAnswer

TASK = "task-aaaaaaaaaaaaaaaa"


class Recorder:
    """A reporter that keeps everything in memory and answers results from a script."""

    def __init__(self, *answers: ResultAnswer) -> None:
        self.chunks: list[tuple[str, int, int, str]] = []
        self.results: list[tuple[str, int, StepOutcome]] = []
        self.asked_then: list[bool] = []
        self._answers = deque(answers)

    def log(self, task_id: str, step_index: int, chunks: Sequence[OutputChunk]) -> None:
        self.chunks += [(task_id, step_index, chunk.seq, chunk.data) for chunk in chunks]

    async def result(
        self, task_id: str, step_index: int, outcome: StepOutcome, *, then: bool = False
    ) -> ResultAnswer:
        self.results.append((task_id, step_index, outcome))
        self.asked_then.append(then)
        return self._answers.popleft()

    def output(self, step_index: int) -> str:
        return "".join(data for _, index, _, data in self.chunks if index == step_index)


def step(
    index: int,
    script: str,
    *,
    slot: int = 0,
    new_workdir: bool = False,
    env: dict[str, str] | None = None,
    task_id: str = TASK,
) -> Assignment:
    return Assignment(
        task_id=task_id,
        slot=slot,
        step_index=index,
        step=AssignedStep(name=f"step {index}", run=script),
        env=env or {},
        new_workdir=new_workdir,
    )


@pytest.fixture
def slots(tmp_path: Path) -> SlotTable:
    return SlotTable(2, Workdirs(tmp_path / "work"))


async def run(slots: SlotTable, reporter: Recorder, first: Assignment) -> None:
    runner = SlotRunner(slots=slots, reporter=reporter, grace_seconds=1)
    await runner.run(first, slots.begin(first))


async def test_the_working_directory_is_kept_between_steps_and_deleted_on_release(
    slots: SlotTable, tmp_path: Path
) -> None:
    workdir = tmp_path / "work" / TASK
    reporter = Recorder(
        ResultAnswer(next=step(1, "cat plan; pwd", slot=1)),  # "next" always runs in this slot
        ResultAnswer(reserve=True),
    )
    await run(slots, reporter, step(0, "echo planned > plan", new_workdir=True))
    assert reporter.output(1) == f"planned\n{workdir}\n"
    # Waiting for an approval: the slot stays reserved, the directory stays.
    assert (slots.free(), slots.reserved(), slots.running()) == ([1], [0], [])
    assert (workdir / "plan").read_text() == "planned\n"

    reporter = Recorder(ResultAnswer(release=True))
    await run(slots, reporter, step(2, "cat plan"))  # approved: same slot, same directory
    assert reporter.output(2) == "planned\n"
    assert slots.free() == [0, 1]
    assert not workdir.exists()


async def test_a_release_from_the_control_plane_frees_a_reserved_slot(
    slots: SlotTable, tmp_path: Path
) -> None:
    await run(slots, Recorder(ResultAnswer(reserve=True)), step(0, "touch f", new_workdir=True))
    assert (tmp_path / "work" / TASK / "f").exists()
    await slots.release(TASK)
    assert slots.free() == [0, 1]
    assert not (tmp_path / "work" / TASK).exists()


async def test_results_follow_the_steps_output(slots: SlotTable) -> None:
    reporter = Recorder(ResultAnswer(next=step(1, "exit 4")), ResultAnswer(release=True))
    await run(slots, reporter, step(0, "echo one; echo two", new_workdir=True))
    assert reporter.output(0) == "one\ntwo\n"
    assert [
        (index, outcome.status, outcome.exit_code) for _, index, outcome in reporter.results
    ] == [
        (0, StepStatus.succeeded, 0),
        (1, StepStatus.failed, 4),
    ]


async def test_a_step_gets_a_clean_environment(
    slots: SlotTable, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The base, the pool's variables passed on, the task's env, which step it is; nothing else
    of the agent's, above all not its secrets."""
    monkeypatch.setenv("FROM_THE_AGENT", "yes")
    monkeypatch.setenv("POOL_PROXY", "http://proxy")
    monkeypatch.setenv("SLOTPOOL_AGENT_TOKEN", "spt_secret")
    monkeypatch.setenv("SLOTPOOL_POD_UID", "launch-secret")
    script = 'echo "$GREETING $POOL_PROXY $SLOTPOOL_TASK_ID $SLOTPOOL_STEP_INDEX $SLOTPOOL_SLOT"'
    script += '; echo "path=${PATH:+set} home=${HOME:+set}"; env | cut -d= -f1 | sort'
    reporter = Recorder(ResultAnswer(release=True))
    first = step(3, script, slot=1, new_workdir=True, env={"GREETING": "hello"})
    runner = SlotRunner(
        slots=slots,
        reporter=reporter,
        grace_seconds=1,
        passed_env={"POOL_PROXY": "http://proxy"},
    )
    await runner.run(first, slots.begin(first))
    greeting, base, *names = reporter.output(3).splitlines()
    assert greeting == f"hello http://proxy {TASK} 3 1"
    assert base == "path=set home=set"
    allowed = {*BASE_VARIABLES, "GREETING", "POOL_PROXY", "PWD", "SHLVL", "_", "OLDPWD"}
    allowed |= {"SLOTPOOL_TASK_ID", "SLOTPOOL_STEP_INDEX", "SLOTPOOL_SLOT"}
    assert set(names) <= allowed, set(names) - allowed


@pytest.mark.skipif(os.geteuid() != 0, reason="only root runs steps as another user")
async def test_a_step_user_runs_the_step_and_owns_its_workdir(tmp_path: Path) -> None:
    user = StepUser("nobody", 65534, 65534)
    slots = SlotTable(1, Workdirs(tmp_path / "work", user))
    reporter = Recorder(ResultAnswer(release=True))
    first = step(0, 'id -u; id -G; echo "$HOME"; touch made && stat -c %u made', new_workdir=True)
    runner = SlotRunner(slots=slots, reporter=reporter, grace_seconds=1, user=user)
    await runner.run(first, slots.begin(first))
    workdir = tmp_path / "work" / TASK
    # Its own user, no group of the agent's, its working directory its home and its own.
    assert reporter.output(0).splitlines() == ["65534", "65534", str(workdir), "65534"]
    assert reporter.results[0][2].status is StepStatus.succeeded


async def test_a_cancelled_slot_reports_cancelled(slots: SlotTable) -> None:
    reporter = Recorder(ResultAnswer(release=True))
    first = step(0, "sleep 30", new_workdir=True)
    cancellation = slots.begin(first)
    slots.cancel(TASK, "cancelled on request")
    await SlotRunner(slots=slots, reporter=reporter, grace_seconds=1).run(first, cancellation)
    assert reporter.results[0][2] == StepOutcome(StepStatus.cancelled, None, "cancelled on request")


async def test_a_slot_holds_one_task(slots: SlotTable) -> None:
    slots.begin(step(0, "true", new_workdir=True))
    with pytest.raises(AlreadyRunning):
        slots.begin(step(0, "true", new_workdir=True))
    with pytest.raises(SlotConflict):
        slots.begin(step(0, "true", task_id="task-bbbbbbbbbbbbbbbb"))
    with pytest.raises(SlotConflict):
        slots.begin(step(0, "true", slot=7))


async def test_a_task_id_that_could_escape_the_work_directory_fails_the_step(
    slots: SlotTable, tmp_path: Path
) -> None:
    reporter = Recorder(ResultAnswer(release=True))
    await run(slots, reporter, step(0, "touch x", new_workdir=True, task_id="../escape"))
    outcome = reporter.results[0][2]
    assert outcome.status is StepStatus.failed
    assert "working directory" in outcome.message
    assert not (tmp_path / "escape").exists()


async def test_a_new_task_that_comes_with_a_release_runs_in_the_freed_slot(
    slots: SlotTable, tmp_path: Path
) -> None:
    """``ResultAnswer.then``: the slot is released (the old task's directory deleted) and the new
    task begins there at once, in a new directory; each result asks for such a task."""
    other = "task-bbbbbbbbbbbbbbbb"
    new = step(0, "pwd; ls", slot=1, new_workdir=True, task_id=other)
    reporter = Recorder(ResultAnswer(release=True, then=new), ResultAnswer(release=True))
    await run(slots, reporter, step(0, "touch mine", slot=1, new_workdir=True))
    assert [(task_id, outcome.status) for task_id, _, outcome in reporter.results] == [
        (TASK, StepStatus.succeeded),
        (other, StepStatus.succeeded),
    ]
    assert reporter.output(0) == f"{tmp_path / 'work' / other}\n"  # a new, empty directory
    assert reporter.asked_then == [True, True]
    assert not (tmp_path / "work" / TASK).exists()  # with a file in it
    assert not (tmp_path / "work" / other).exists()  # empty
    assert slots.free() == [0, 1]


async def test_a_new_task_for_another_slot_is_a_protocol_error(slots: SlotTable) -> None:
    wrong = step(0, "true", slot=0, new_workdir=True, task_id="task-bbbbbbbbbbbbbbbb")
    reporter = Recorder(ResultAnswer(release=True, then=wrong))
    with pytest.raises(ProtocolError, match="brought a task for 0"):
        await run(slots, reporter, step(0, "true", slot=1, new_workdir=True))
