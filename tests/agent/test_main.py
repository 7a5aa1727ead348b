"""The agent as a process (``python -m slotpool.agent``): configured by its environment, drained
by SIGTERM."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import pytest

from tests.agent.fake_plane import FakeControlPlane
from tests.agent.helpers import read_pid, wait_until
from tests.support.processes import alive

TASK = "task-aaaaaaaaaaaaaaaa"


def agent_env(plane: FakeControlPlane, work_dir: Path) -> dict[str, str]:
    return {
        **os.environ,
        "SLOTPOOL_SERVER_URL": plane.url,
        "SLOTPOOL_POOL_ID": "pool-test",
        "SLOTPOOL_AGENT_NAME": "agent-0",
        "SLOTPOOL_SLOTS": "1",
        "SLOTPOOL_AGENT_TOKEN": "good",
        "SLOTPOOL_WORK_DIR": str(work_dir),
        # The steps here write next to their working directory, the agent's: as the agent.
        "SLOTPOOL_STEP_USER": "none",
    }


async def start(env: dict[str, str], *wrapper: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        *wrapper,
        sys.executable,
        "-m",
        "slotpool.agent",
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )


async def test_sigterm_drains_and_exits_0(plane: FakeControlPlane, tmp_path: Path) -> None:
    plane.add_task(TASK, {"run": "echo $$ > ../step.pid; sleep 0.5; echo finished"})
    agent = await start(agent_env(plane, tmp_path / "work"))
    await read_pid(tmp_path / "work" / "step.pid", seconds=15)
    agent.send_signal(signal.SIGTERM)
    output, _ = await asyncio.wait_for(agent.communicate(), 15)
    assert agent.returncode == 0, output.decode()
    await wait_until(lambda: plane.results(TASK))
    assert plane.results(TASK)[0]["status"] == "succeeded"
    assert plane.output(TASK, 0) == "finished\n"
    assert any(e.body["draining"] for e in plane.of_kind("heartbeat"))


async def test_a_second_signal_stops_at_once(plane: FakeControlPlane, tmp_path: Path) -> None:
    plane.add_task(TASK, {"run": "echo $$ > ../step.pid; sleep 30"})
    agent = await start(agent_env(plane, tmp_path / "work"))
    pid = await read_pid(tmp_path / "work" / "step.pid", seconds=15)
    agent.send_signal(signal.SIGTERM)
    await wait_until(lambda: any(e.body["draining"] for e in plane.of_kind("heartbeat")))
    agent.send_signal(signal.SIGINT)
    output, _ = await asyncio.wait_for(agent.communicate(), 5)
    assert agent.returncode == 1, output.decode()
    # A killed process is gone a moment later, not at once.
    await wait_until(lambda: not alive(pid), seconds=5)


async def test_a_missing_variable_is_named_and_the_agent_does_not_start(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLOTPOOL_")}
    agent = await start({**env, "SLOTPOOL_SERVER_URL": "http://127.0.0.1:9"})
    output, _ = await asyncio.wait_for(agent.communicate(), 15)
    assert agent.returncode == 2
    assert b"SLOTPOOL_POOL_ID is not set" in output


# As in a Pod: the agent and its steps share a user that is not root: here nobody, running the
# system's Python (the venv's interpreter is in /root) with this checkout and the venv's packages.
AS_NOBODY = ("setpriv", "--reuid=65534", "--regid=65534", "--clear-groups")
SYSTEM_PYTHON = "/usr/bin/python3"


def nobody_runs_the_agent() -> bool:
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        return False
    probe = [*AS_NOBODY, SYSTEM_PYTHON, "-c", "import slotpool.agent.main"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path[1:])}
    return subprocess.run(probe, env=env, capture_output=True, check=False).returncode == 0


@pytest.mark.skipif(not nobody_runs_the_agent(), reason="needs root, setpriv, a system Python")
async def test_a_step_of_the_agents_own_user_cannot_read_the_agent(
    plane: FakeControlPlane, tmp_path: Path
) -> None:
    """The agent is non-dumpable: a step of its own user (which may signal it) still cannot
    read its /proc environ, memory or open files."""
    script = (
        "id -u; tr '\\0' '\\n' </proc/$PPID/environ; head -c 64 /proc/$PPID/mem | wc -c; "
        "ls /proc/$PPID/fd; exit 0"
    )
    plane.add_task(TASK, {"run": script})
    work = Path(tempfile.mkdtemp(prefix="slotpool-agent-test-"))
    os.chmod(work, 0o1777)
    env = agent_env(plane, work / "work")
    del env["SLOTPOOL_STEP_USER"]  # the default: an agent that is not root runs steps as itself
    env["SLOTPOOL_AGENT_TOKEN"] = plane.token = "spt_the-pool-token-of-this-test"
    env["PYTHONPATH"] = os.pathsep.join(sys.path[1:])
    agent = await asyncio.create_subprocess_exec(
        *AS_NOBODY,
        SYSTEM_PYTHON,
        "-m",
        "slotpool.agent",
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        await wait_until(lambda: plane.results(TASK), seconds=20)
    finally:
        agent.send_signal(signal.SIGTERM)
        await asyncio.wait_for(agent.communicate(), 15)
        shutil.rmtree(work, ignore_errors=True)
    seen = plane.output(TASK, 0)
    assert seen.splitlines()[0] == "65534"  # the step ran as the agent's user
    assert seen.count("Permission denied") == 3, seen
    for secret in (plane.token, plane.credential or "spa_", "SLOTPOOL_"):
        assert secret not in seen, seen


@pytest.mark.skipif(sys.version_info >= (3, 12), reason="3.12 waits through pidfds by itself")
def test_steps_are_waited_for_through_a_pidfd_not_a_thread_each() -> None:
    """The agent's child watcher: a step's end is seen in the event loop (no thread started per
    step), and its exit status is read as before."""
    from slotpool.agent.main import watch_children_with_pidfds

    async def exit_status() -> tuple[int | None, int]:
        before = threading.active_count()
        process = await asyncio.create_subprocess_exec("/bin/sh", "-c", "sleep 0.2; exit 3")
        during = threading.active_count()
        await process.wait()
        return process.returncode, during - before

    try:
        assert watch_children_with_pidfds()
        assert isinstance(asyncio.get_child_watcher(), asyncio.PidfdChildWatcher)
        assert asyncio.run(exit_status()) == (3, 0)
    finally:
        asyncio.set_child_watcher(None)  # type: ignore[arg-type]  # the default again
