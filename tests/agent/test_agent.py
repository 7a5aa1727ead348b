"""The agent's loops against a small control plane on a real port: claims, heartbeats, results,
outages, drains, a bad token, and a root task that fails."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from pathlib import Path
from typing import Any

from slotpool.agent import AgentConfig, run_agent
from slotpool.agent.process import FLUSH_SECONDS
from tests.agent.fake_plane import FakeControlPlane
from tests.agent.helpers import read_pid, wait_until
from tests.support.processes import alive

TASK = "task-aaaaaaaaaaaaaaaa"
OTHER = "task-bbbbbbbbbbbbbbbb"


def config_for(plane: FakeControlPlane, tmp_path: Path, **changes: Any) -> AgentConfig:
    config = AgentConfig(
        server_url=plane.url,
        pool_id="pool-test",
        name="agent-0",
        slots=1,
        token="good",
        work_dir=tmp_path / "work",
        grace_seconds=1,
        drain_grace_seconds=5,
        flush_seconds=5,
        retry_first_seconds=0.05,
        retry_max_seconds=0.4,
    )
    return dataclasses.replace(config, **changes)


class Running:
    """An agent running in this event loop, stopped (drained) by the test."""

    def __init__(self, config: AgentConfig) -> None:
        self.stop = asyncio.Event()
        self.task = asyncio.create_task(run_agent(config, stop=self.stop))

    async def drain(self, seconds: float = 15) -> int:
        self.stop.set()
        return await asyncio.wait_for(self.task, seconds)


def run(script: str, **extra: Any) -> dict[str, Any]:
    return {"name": "step", "run": script, **extra}


async def test_steps_run_and_report_output_then_results(
    plane: FakeControlPlane, tmp_path: Path
) -> None:
    plane.add_task(TASK, run("echo planned > plan; echo one"), run("cat plan"), env={"X": "1"})
    agent = Running(config_for(plane, tmp_path))
    await wait_until(lambda: len(plane.results(TASK)) == 2)
    assert await agent.drain() == 0

    assert [(r["step_index"], r["status"], r["exit_code"]) for r in plane.results(TASK)] == [
        (0, "succeeded", 0),
        (1, "succeeded", 0),
    ]
    assert plane.output(TASK, 0) == "one\n"
    assert plane.output(TASK, 1) == "planned\n"  # the next step ran in the same directory
    assert not (tmp_path / "work" / TASK).exists()  # released: deleted
    register = plane.of_kind("register")[0].body
    assert register == {
        "name": "agent-0",
        "slots": 1,
        "version": register["version"],
        "running": [],
        "credential": plane.credential,  # its own, bound by this registration
    }
    assert register["credential"].startswith("spa_")
    assert plane.of_kind("claim")[0].body["free_slots"] == [0]
    _assert_logs_before_results(plane)


def _assert_logs_before_results(plane: FakeControlPlane) -> None:
    """Every log chunk of a step reached the control plane before that step's result."""
    reported: set[tuple[str, int]] = set()
    for event in plane.events:
        if event.kind == "result":
            reported.add((event.params["task_id"], int(event.params["step_index"])))
        if event.kind in ("logs", "log"):
            step = int(event.params.get("step_index", event.body.get("step_index", -1)))
            assert (event.params["task_id"], step) not in reported


async def test_a_step_that_ends_during_an_outage_is_reported_when_the_server_is_back(
    plane: FakeControlPlane, tmp_path: Path
) -> None:
    plane.add_task(TASK, run("echo start; sleep 1; echo end"))
    agent = Running(config_for(plane, tmp_path))
    await wait_until(lambda: plane.output(TASK, 0) == "start\n")
    await asyncio.to_thread(plane.stop)
    await asyncio.sleep(1.5)  # the step ends while nobody listens
    plane.mark("restarted")
    await asyncio.to_thread(plane.start)
    await wait_until(lambda: plane.results(TASK))
    assert await agent.drain() == 0

    assert plane.results(TASK)[0]["status"] == "succeeded"
    assert plane.output(TASK, 0) == "start\nend\n"
    seqs = plane.seqs(TASK, 0)
    assert seqs == sorted(seqs)
    assert sorted(set(seqs)) == list(range(len(set(seqs))))
    # Back again, the agent registers first, and tells what still runs (not reported yet).
    after = plane.events[[e.kind for e in plane.events].index("restarted") + 1 :]
    assert after[0].kind == "register"
    assert after[0].body["running"] == [{"task_id": TASK, "step_index": 0, "slot": 0}]
    _assert_logs_before_results(plane)


async def test_server_errors_are_retried_with_back_off(
    plane: FakeControlPlane, tmp_path: Path
) -> None:
    plane.fail_status = 503
    agent = Running(config_for(plane, tmp_path))
    await asyncio.sleep(1.0)
    # 0.05 s doubling to 0.4 s: a handful of attempts in a second, not hundreds.
    assert 3 <= plane.failed_requests <= 12
    plane.fail_status = None
    plane.add_task(TASK, run("echo ok"))
    await wait_until(lambda: plane.results(TASK))
    assert await agent.drain() == 0
    assert plane.output(TASK, 0) == "ok\n"


async def test_a_bad_token_stops_the_agent_with_exit_code_2(
    plane: FakeControlPlane, tmp_path: Path
) -> None:
    code = await asyncio.wait_for(run_agent(config_for(plane, tmp_path, token="wrong")), 10)
    assert code == 2


async def test_a_drain_lets_the_running_step_finish(
    plane: FakeControlPlane, tmp_path: Path
) -> None:
    plane.add_task(TASK, run("echo $$ > ../step.pid; sleep 0.7; echo done"))
    agent = Running(config_for(plane, tmp_path))
    await read_pid(tmp_path / "work" / "step.pid")
    drained_at = time.monotonic()
    assert await agent.drain() == 0

    result = plane.results(TASK)[0]
    assert (result["status"], plane.output(TASK, 0)) == ("succeeded", "done\n")
    assert any(e.body["draining"] for e in plane.of_kind("heartbeat"))
    assert not [e for e in plane.of_kind("claim") if e.at > drained_at]


async def test_a_drain_cancels_what_outlasts_the_grace_period(
    plane: FakeControlPlane, tmp_path: Path
) -> None:
    plane.add_task(TASK, run("echo $$ > ../step.pid; sleep 30"))
    agent = Running(config_for(plane, tmp_path, drain_grace_seconds=0.3))
    pid = await read_pid(tmp_path / "work" / "step.pid")
    assert await agent.drain(seconds=5) == 0
    result = plane.results(TASK)[0]
    assert result["status"] == "cancelled"
    assert "drain grace period" in result["message"]
    # A killed process is gone a moment later, not at once.
    await wait_until(lambda: not alive(pid), seconds=5)


async def test_a_cancel_in_a_heartbeat_stops_the_step(
    plane: FakeControlPlane, tmp_path: Path
) -> None:
    plane.add_task(TASK, run("echo $$ > ../step.pid; sleep 30"))
    agent = Running(config_for(plane, tmp_path))
    pid = await read_pid(tmp_path / "work" / "step.pid")
    plane.cancel.add(TASK)
    await wait_until(lambda: plane.results(TASK))
    assert await agent.drain() == 0
    assert plane.results(TASK)[0]["status"] == "cancelled"
    # A killed process is gone a moment later, not at once.
    await wait_until(lambda: not alive(pid), seconds=5)


async def test_a_failing_root_task_stops_the_agent_and_its_steps(
    plane: FakeControlPlane, tmp_path: Path
) -> None:
    plane.add_task(TASK, run("echo $$ > ../step.pid; sleep 60"))
    agent = Running(config_for(plane, tmp_path, slots=2))
    pid = await read_pid(tmp_path / "work" / "step.pid")
    plane.claim_override = {"assignments": "not a list"}  # the claim loop cannot go on
    code = await asyncio.wait_for(agent.task, 10)
    assert code == 1
    # A killed process is gone a moment later, not at once.
    await wait_until(lambda: not alive(pid), seconds=5)
    assert not plane.results(TASK)


async def test_a_steps_output_goes_out_in_batches_of_both_streams(
    plane: FakeControlPlane, tmp_path: Path
) -> None:
    # 1,000 short lines, the two streams taking turns, over a second or so.
    script = "for i in $(seq 500); do echo out $i; echo err $i >&2; sleep 0.002; done"
    plane.add_task(TASK, run(script))
    started = time.monotonic()
    agent = Running(config_for(plane, tmp_path))
    await wait_until(lambda: plane.results(TASK), seconds=30)
    took = time.monotonic() - started
    assert await agent.drain() == 0

    lines = [f"{stream} {i}\n" for i in range(1, 501) for stream in ("out", "err")]
    assert sorted(plane.output(TASK, 0).splitlines(keepends=True)) == sorted(lines)
    requests = plane.log_requests(TASK, 0)
    chunks = [chunk for sent in requests for chunk in sent]
    assert [c["seq"] for c in chunks] == list(range(len(chunks)))  # each sent once, in order
    assert {c.get("stream", "stdout") for c in chunks} == {"stdout", "stderr"}
    assert len(chunks) >= 100  # the streams took turns: a chunk each time
    # A request per flush (every FLUSH_SECONDS, and at the end), not one per chunk.
    assert len(requests) <= took / FLUSH_SECONDS + 2, [len(sent) for sent in requests]
    assert not plane.of_kind("log")
    _assert_logs_before_results(plane)


async def test_a_control_plane_without_batches_gets_the_chunks_one_at_a_time(
    plane: FakeControlPlane, tmp_path: Path
) -> None:
    plane.batches = False  # the previous version: POST .../logs, one chunk each
    plane.add_task(TASK, run("echo out; sleep 0.5; echo err >&2"))
    agent = Running(config_for(plane, tmp_path))
    await wait_until(lambda: plane.results(TASK))
    assert await agent.drain() == 0

    assert plane.output(TASK, 0) == "out\nerr\n"
    assert [e.body["seq"] for e in plane.of_kind("log")] == [0, 1]
    assert plane.of_kind("log")[1].body["stream"] == "stderr"
    _assert_logs_before_results(plane)


async def test_a_step_given_a_slot_whose_result_answer_is_on_its_way_starts_once_it_is_free(
    plane: FakeControlPlane, tmp_path: Path
) -> None:
    # The next task is placed in slot 0 as the result frees it, and the pending claim (offering
    # slot 1 only) answers it before the result's answer reaches the runner.
    plane.claim_wait = 20  # a claim left waiting would hold the step back for that long
    plane.add_task(TASK, run("sleep 0.3"))
    plane.add_task_for_a_freed_slot(OTHER, run("echo next"))
    agent = Running(config_for(plane, tmp_path, slots=2))
    await wait_until(lambda: plane.results(TASK))
    ended = time.monotonic()
    await wait_until(lambda: plane.results(OTHER), seconds=15)
    assert time.monotonic() - ended < 5  # not after the pending claim's 20 s
    assert await agent.drain() == 0
    assert plane.output(OTHER, 0) == "next\n"
