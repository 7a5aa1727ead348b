"""The check that nothing a test run starts outlives it, on test runs of its own: a pytest in a
subprocess with the leak check (``tests.support.leaks``) and a test that leaves a process."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

from tests.support import processes
from tests.support.leaks import GRACE_ENV

ROOT = Path(__file__).resolve().parents[2]


def run_pytest(tmp_path: Path, test: str) -> subprocess.CompletedProcess[str]:
    """``test`` (a module's source) run by a pytest of its own with the leak check only."""
    (tmp_path / "test_it.py").write_text(textwrap.dedent(test))
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "tests.support.leaks", "-p", "no:cacheprovider",
         "--rootdir", str(tmp_path), "-q", str(tmp_path / "test_it.py")],
        cwd=ROOT,  # ``tests`` importable
        env={**os.environ, GRACE_ENV: "0.5"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )  # fmt: skip


def running(marker: str) -> list[int]:
    return [pid for pid in processes.pids() if marker in processes.command_line(pid)]


def test_a_detached_grandchild_left_running_fails_the_run_and_is_killed(tmp_path: Path) -> None:
    seconds = f"{300 + uuid.uuid4().int % 1000}.{os.getpid()}"  # names this test's sleep
    result = run_pytest(
        tmp_path,
        f"""
        import subprocess

        def test_leaves_a_process_behind():
            # sh starts sleep in a session of its own and exits: sleep is nobody's child now
            subprocess.run(["sh", "-c", "setsid sleep {seconds} &"], check=True)
        """,
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert "1 passed" in result.stdout
    assert "1 process(es) started by the test run outlived it (now killed)" in result.stdout
    assert f"sleep {seconds}" in result.stdout
    deadline = time.monotonic() + 5
    while running(f"sleep {seconds}") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert running(f"sleep {seconds}") == []


def test_a_run_that_ends_what_it_started_passes(tmp_path: Path) -> None:
    result = run_pytest(
        tmp_path,
        """
        import subprocess

        def test_ends_its_process():
            process = subprocess.Popen(["sleep", "30"])
            process.kill()
            process.wait()

        def test_a_process_ending_within_the_grace_is_no_leak():
            subprocess.run(["sh", "-c", "setsid sleep 0.2 &"], check=True)
        """,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 passed" in result.stdout
    assert "outlived" not in result.stdout
