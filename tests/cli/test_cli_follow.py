"""`tasks submit --follow` against a live server with real agents (a local pool): the exit code
is the task's, the step's stderr stays on stderr, what a waiting task waits for is told, and
`tasks submit -f task.yaml` runs steps behind an approval gate."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from typer.testing import CliRunner

from slotpool.cli import app
from slotpool.cli.tasks import exit_code
from tests.api.conftest import ADMIN_TOKEN, settings_for
from tests.support.ports import free_port
from tests.support.server import end_local_agents, live_server

runner = CliRunner()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """A server with a local pool "here" (one agent, four slots) and a static pool "idle" that
    no agent serves."""
    work = tmp_path_factory.mktemp("follow")
    port = free_port()
    settings = settings_for(
        f"sqlite:///{work}/slotpool.db",
        local_runtime=True,
        data_dir=work / "data",
        public_url=f"http://127.0.0.1:{port}",
        pod_sync_seconds=0,  # its one agent comes from `pools sync`; nothing else starts one
    )
    config = work / "config.yaml"
    config.write_text(yaml.safe_dump({"min_replicas": 1, "slots_per_pod": 4}))
    try:
        with live_server(settings, port=port) as served:
            env = {"SLOTPOOL_URL": served.url, "SLOTPOOL_ADMIN_TOKEN": ADMIN_TOKEN}
            cli(env, "pools", "create", "here", "--type", "local", "-f", str(config))
            cli(env, "pools", "sync", "here")
            cli(env, "pools", "create", "idle", "--type", "static")
            yield env
    finally:
        end_local_agents(settings)


def cli(env: dict[str, str], *args: str, code: int = 0) -> Any:
    result = runner.invoke(app, list(args), env=env)
    assert result.exit_code == code, (result.stdout, result.stderr, result.exception)
    return result


def later(env: dict[str, str], action: str, status: str) -> threading.Thread:
    """In a thread: once the newest task is ``status``, POST its ``action`` (approve, cancel)."""

    def act() -> None:
        headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        with httpx.Client(base_url=env["SLOTPOOL_URL"], headers=headers) as api:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                newest = api.get("/api/v1/tasks", params={"limit": 1}).json()["items"]
                if newest and newest[0]["status"] == status:
                    api.post(f"/api/v1/tasks/{newest[0]['id']}/{action}").raise_for_status()
                    return
                time.sleep(0.1)

    thread = threading.Thread(target=act, daemon=True)
    thread.start()
    return thread


def test_the_exit_code_is_the_steps_and_stderr_stays_on_stderr(server: dict[str, str]) -> None:
    script = "echo out; echo err >&2; echo more out; exit 3"
    result = cli(
        server, "tasks", "submit", "--pool", "here", "--follow", "--", "sh", "-c", script, code=3
    )
    assert result.stdout == "out\nmore out\n"
    assert "err\n" in result.stderr
    assert "out" not in result.stderr.replace("timed out", "")
    assert "exited with code 3" in result.stderr  # the task's reason, once it ended
    ok = cli(server, "tasks", "submit", "--pool", "here", "--follow", "--", "echo", "hello")
    assert ok.stdout == "hello\n"


def test_the_log_afterwards_keeps_the_streams_apart_too(server: dict[str, str]) -> None:
    submitted = cli(
        server, "tasks", "submit", "--pool", "here", "--", "sh", "-c", "echo o; echo e >&2"
    )
    task_id = submitted.stdout.strip()
    cli(server, "tasks", "logs", task_id, "--follow")  # until it ended
    logs = cli(server, "tasks", "logs", task_id)
    assert (logs.stdout, logs.stderr) == ("o\n", "e\n")


@pytest.mark.parametrize(
    ("argv", "code"),
    [
        (["/nonexistent/tool"], 126),  # could not start
        (["sh", "-c", "kill -9 $$"], 128 + 9),  # killed by SIGKILL
    ],
)
def test_a_step_that_did_not_exit_by_itself_has_a_code_of_its_own(
    server: dict[str, str], argv: list[str], code: int
) -> None:
    cli(server, "tasks", "submit", "--pool", "here", "--follow", "--", *argv, code=code)


def test_a_step_over_its_time_limit_exits_124(server: dict[str, str], tmp_path: Path) -> None:
    task = tmp_path / "task.yaml"
    steps = [{"name": "slow", "run": "sleep 30", "timeout_seconds": 1}]
    task.write_text(yaml.safe_dump({"pool": "here", "steps": steps}))
    result = cli(server, "tasks", "submit", "-f", str(task), "--follow", code=124)
    assert "timed_out" in result.stderr


def test_a_cancelled_task_exits_125_and_a_queued_one_says_so(server: dict[str, str]) -> None:
    canceller = later(server, "cancel", "queued")
    result = cli(server, "tasks", "submit", "--pool", "idle", "--follow", "--", "true", code=125)
    canceller.join()
    lines = result.stderr.splitlines()
    assert any(line.startswith("task task-") and line.endswith(" queued") for line in lines)
    assert "cancelled by" in lines[-1]


def test_a_task_file_with_an_approval_gate_waits_and_says_why(
    server: dict[str, str], tmp_path: Path
) -> None:
    task = tmp_path / "task.yaml"
    task.write_text(
        "name: plan and apply\n"
        "pool: here\n"
        "env: {WHAT: infra}\n"
        "labels: {team: ops}\n"
        "steps:\n"
        "  - {name: plan, run: 'echo plan $WHAT > plan.txt; cat plan.txt'}\n"
        "  - {name: apply, run: 'echo applied $(cat plan.txt) $EXTRA', requires_approval: true}\n"
    )
    approver = later(server, "approve", "awaiting_approval")
    result = cli(server, "tasks", "submit", "-f", str(task), "-e", "EXTRA=x", "--follow")
    approver.join()
    assert result.stdout == "plan infra\napplied plan infra x\n"  # the same working directory
    waiting = [line for line in result.stderr.splitlines() if "awaiting_approval" in line]
    assert len(waiting) == 1, result.stderr
    assert waiting[0].endswith("awaiting_approval: waits for approval of step 2")
    listed = yaml.safe_load(cli(server, "tasks", "list", "--pool", "here", "-o", "yaml").stdout)
    (submitted,) = [t for t in listed if t["name"] == "plan and apply"]
    assert submitted["labels"] == {"team": "ops"}
    assert [s["requires_approval"] for s in submitted["steps"]] == [False, True]


def test_bad_task_files_and_arguments_are_one_line(server: dict[str, str], tmp_path: Path) -> None:
    task = tmp_path / "task.yaml"
    cases: list[tuple[str | None, list[str], str]] = [
        (None, ["-f", str(tmp_path / "missing.yaml")], "cannot read"),
        ("steps: [a\n", ["-f", str(task)], "task.yaml, line 2"),
        ("- a list\n", ["-f", str(task)], "a task must be a mapping"),
        ("steps: [{run: x}]\n", ["-f", str(task)], "which pool?"),
        (None, ["--pool", "here"], "give the command after --, or a task file"),
        (None, ["--pool", "here", "-e", "NOEQUALS", "--", "true"], "--env takes NAME=value"),
    ]
    for text, args, message in cases:
        if text is not None:
            task.write_text(text)
        result = cli(server, "tasks", "submit", *args, code=1)
        assert result.stderr.count("\n") == 1, result.stderr
        assert message in result.stderr
    task.write_text("pool: here\nsteps: [{run: x, colour: red}]\n")
    refused = cli(server, "tasks", "submit", "-f", str(task), code=1)
    assert "steps.0.colour" in refused.stderr  # the server's field path
    assert "Traceback" not in refused.stderr


def test_exit_codes_of_tasks_that_ended_without_a_step_exit() -> None:
    def task(status: str, *results: dict[str, Any]) -> dict[str, Any]:
        return {"status": status, "results": list(results)}

    approval = {"approved_by": "admin", "approved_at": "2026-01-01T00:00:00+00:00"}
    failed = {"step_index": 1, "status": "failed", "exit_code": 7, "message": "exited with code 7"}
    assert exit_code(task("succeeded")) == 0
    assert exit_code(task("failed", failed, approval)) == 7
    assert exit_code(task("lost")) == 120
    assert exit_code(task("expired")) == 121
    assert exit_code(task("timed_out")) == 124
    assert exit_code(task("cancelled")) == 125
    killed = {"step_index": 0, "exit_code": None, "message": "killed by signal SIGTERM"}
    assert exit_code(task("failed", killed)) == 128 + 15
    unknown = {"step_index": 0, "exit_code": None, "message": "killed by signal SIGNOPE"}
    assert exit_code(task("failed", unknown)) == 126
