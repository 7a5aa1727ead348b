"""What a new user meets first: `slotpool --version`, help that prints what was written, and a
real `slotpool up` process that starts quietly and prints a command that works as printed."""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
from typer.testing import CliRunner

from slotpool import __version__
from slotpool.cli import app
from slotpool.settings import Settings
from tests.support.ports import free_port
from tests.support.server import end_local_agents

runner = CliRunner()
BANNER = f"slotpool {__version__} is up at "


def test_version() -> None:
    result = runner.invoke(app, ["--version"])
    assert (result.exit_code, result.stdout) == (0, f"slotpool {__version__}\n")


def test_help_keeps_brackets_and_says_the_exit_codes() -> None:
    events = runner.invoke(app, ["pools", "events", "--help"], env={"COLUMNS": "200"})
    assert events.exit_code == 0
    assert "[min..max]" in events.stdout
    submit = runner.invoke(app, ["tasks", "submit", "--help"], env={"COLUMNS": "200"})
    text = " ".join(submit.stdout.split())
    assert "124 timed out; 125 cancelled; 126 the step could not start" in text
    pools = runner.invoke(app, ["pools", "--help"], env={"COLUMNS": "200"}).stdout
    assert "The pool's Pods with their slots (idle" in pools  # not cut at "(."


def test_up_starts_quietly_and_its_banner_command_works(tmp_path: Path) -> None:
    """As from a checkout: only the virtual environment's ``bin/slotpool`` exists, not on the
    PATH; the banner's command, run by a shell as printed, submits and follows a task."""
    script = Path(sys.executable).with_name("slotpool")
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLOTPOOL_")}
    env |= {"XDG_DATA_HOME": str(tmp_path / "xdg"), "PATH": "/usr/bin:/bin", "COLUMNS": "200"}
    port = free_port()
    errors = tmp_path / "stderr.txt"
    with errors.open("wb") as stderr:
        up = subprocess.Popen(
            [str(script), "up", "--port", str(port)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    try:
        wait_ready(f"http://127.0.0.1:{port}", up)
        before, banner, _ = errors.read_text().partition(BANNER)
        assert banner, errors.read_text()
        assert before.strip() == ""  # no Alembic lines, no "Will assume non-transactional DDL"
        (command,) = [
            line.removeprefix("try:").strip()
            for line in errors.read_text().splitlines()
            if line.startswith("try:")
        ]
        url = f"http://127.0.0.1:{port}"
        assert command == (
            f"{shlex.quote(str(script))} tasks submit --url {url} --pool demo --follow -- "
            "echo hello"
        )
        ran = subprocess.run(
            ["/bin/sh", "-c", command], env=env, capture_output=True, text=True, timeout=120
        )
        assert (ran.returncode, ran.stdout) == (0, "hello\n"), ran.stderr
    finally:
        up.send_signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            up.wait(timeout=20)
        if up.poll() is None:
            up.kill()
            up.wait()
        end_local_agents(Settings.model_validate({"data_dir": tmp_path / "xdg" / "slotpool"}))


def wait_ready(url: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert process.poll() is None, "slotpool up exited"
        with contextlib.suppress(httpx.TransportError):
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return
        time.sleep(0.1)
    raise AssertionError("slotpool up was not ready in 60 s")
