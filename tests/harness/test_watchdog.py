"""The hang watchdog (``tests.support.watchdog``), on test runs of its own: a test that waits
forever is reported with what its asyncio tasks await, and the run ends, failed."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

from tests.support.watchdog import HANG_ENV

ROOT = Path(__file__).resolve().parents[2]


def run_pytest(tmp_path: Path, test: str, hang_seconds: str) -> subprocess.CompletedProcess[str]:
    """``test`` (a module's source) run by a pytest of its own with the watchdog only."""
    (tmp_path / "test_it.py").write_text(textwrap.dedent(test))
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "tests.support.watchdog", "-p", "no:cacheprovider",
         "--rootdir", str(tmp_path), "-q", "-o", "asyncio_mode=auto", str(tmp_path / "test_it.py")],
        cwd=ROOT,  # ``tests`` importable
        env={**os.environ, HANG_ENV: hang_seconds},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )  # fmt: skip


HANGS = """
    import asyncio

    async def never_answered(event):
        await event.wait()

    async def test_waits_forever():
        await asyncio.create_task(never_answered(asyncio.Event()), name="the-waiting-task")

    def test_after():
        pass
"""


def test_a_hanging_test_is_reported_with_its_tasks_stacks_and_ends_the_run(tmp_path: Path) -> None:
    result = run_pytest(tmp_path, HANGS, "2")
    out = result.stdout + result.stderr
    assert result.returncode != 0, out
    assert "test_it.py::test_waits_forever still running after 2 s" in out
    assert "--- threads ---" in out
    assert "the-waiting-task" in out  # the task, and where it waits:
    assert "in never_answered" in out
    assert "KeyboardInterrupt" in out
    assert "1 passed" not in out  # the run stopped at the hang


def test_a_test_within_the_limit_is_left_alone(tmp_path: Path) -> None:
    result = run_pytest(
        tmp_path,
        """
        import time

        def test_quick():
            time.sleep(1.5)
        """,
        "5",
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 passed" in result.stdout
    assert "still running" not in result.stdout + result.stderr


def test_a_limit_that_is_not_a_number_is_a_usage_error(tmp_path: Path) -> None:
    result = run_pytest(tmp_path, "def test_it():\n    pass\n", "ten minutes")
    assert result.returncode == 4, result.stdout + result.stderr
    assert "expected seconds" in result.stderr
