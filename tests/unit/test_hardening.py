"""The server's and the agent's own protections: a non-dumpable process's environment cannot be
read by another process of the same user, and private files and directories are created with
their mode (never readable by others in between) and narrowed when they exist with more."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from slotpool.hardening import private_directory, private_file
from tests.support.agent_python import AGENT_USER, agent_python

SOURCE = str(Path(__file__).resolve().parents[2] / "src")
HOLDER = """
import sys, time
from slotpool.hardening import make_non_dumpable
if sys.argv[1] == "non-dumpable":
    assert make_non_dumpable()
print("ready", flush=True)
time.sleep(30)
"""


def environ_read_by_the_same_user(mode: str) -> subprocess.CompletedProcess[bytes]:
    """A process holding SECRET in its environment, and another of the same user (``nobody``
    when the tests run as root: root itself may read anything) reading its ``environ``."""
    python = str(agent_python() or sys.executable)
    user = AGENT_USER if os.geteuid() == 0 else None
    env = {"PYTHONPATH": SOURCE, "SECRET": "held-in-the-environment"}
    holder = subprocess.Popen(
        [python, "-c", HOLDER, mode], env=env, stdout=subprocess.PIPE, cwd="/", user=user
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline() == b"ready\n"
        return subprocess.run(
            ["cat", f"/proc/{holder.pid}/environ"], capture_output=True, cwd="/", user=user
        )
    finally:
        holder.kill()
        holder.wait()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="prctl is Linux's")
def test_a_non_dumpable_process_s_environment_is_closed_to_its_own_user() -> None:
    dumpable = environ_read_by_the_same_user("dumpable")
    closed = environ_read_by_the_same_user("non-dumpable")

    assert b"held-in-the-environment" in dumpable.stdout  # what the server was before
    assert closed.returncode != 0
    assert b"held-in-the-environment" not in closed.stdout
    assert b"Permission denied" in closed.stderr


def test_private_files_and_directories_are_made_with_their_mode_and_narrowed(
    tmp_path: Path,
) -> None:
    made = private_directory(tmp_path / "a" / "b")
    new = private_file(made / "new.db")
    older = made / "older.db"
    older.write_text("kept")
    older.chmod(0o644)
    loose = tmp_path / "loose"
    loose.mkdir(mode=0o755)

    private_file(older)
    private_directory(loose)

    assert [mode(p) for p in (made, new, older, loose)] == [0o700, 0o600, 0o600, 0o700]
    assert older.read_text() == "kept"


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)
