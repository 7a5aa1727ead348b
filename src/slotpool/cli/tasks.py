"""`slotpool tasks`: submit, list, get, logs (follow), approve, cancel."""

from __future__ import annotations

import re
import signal
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from slotpool.cli.common import (
    DEFAULT_URL,
    Output,
    OutputOption,
    TokenOption,
    UrlOption,
    UserError,
    client,
    err,
    fail,
    read_mapping,
    show,
)
from slotpool.client import ApiError, Client

tasks_app = typer.Typer(help="Tasks: submit, list, get, logs, approve, cancel.")
TASKS = "/api/v1/tasks"
TaskArgument = Annotated[str, typer.Argument(help="Task id.")]


def _table(tasks: list[dict[str, Any]]) -> Table:
    table = Table(box=None, pad_edge=False, header_style="bold")
    for column in ("ID", "NAME", "STATUS", "POD", "SLOT", "CREATED"):
        table.add_column(column, no_wrap=True)
    table.add_column("REASON", overflow="fold")
    for task in tasks:
        table.add_row(
            task["id"],
            task["name"],
            task["status"],
            task["pod_name"] or "-",
            "-" if task["slot_index"] is None else str(task["slot_index"]),
            task["created_at"][:19].replace("T", " "),
            task["reason"],
        )
    return table


WAITING = ("queued", "awaiting_approval")


def _follow(api: Client, task_id: str, told: dict[str, Any] | None = None) -> dict[str, Any]:
    """Print the log as it grows, stdout to stdout and stderr to stderr, and on stderr what the
    task waits for whenever that changes (``told``: the state the user knows already); returns
    the task once it has ended."""
    known = None if told is None else (told["status"], told["reason"])
    with api.follow(task_id) as records:
        for record in records:
            if record["type"] == "log":
                write(record)
            elif record["type"] == "task":
                state = (record["status"], record["reason"])
                if record["status"] in WAITING and state != known:
                    tell_waiting(task_id, record)
                known = state
    task: dict[str, Any] = api.json("GET", f"{TASKS}/{task_id}")
    return task


def write(chunk: dict[str, Any]) -> None:
    """A log chunk to stdout, or to stderr if the step wrote it there."""
    stream = sys.stderr if chunk.get("stream") == "stderr" else sys.stdout
    stream.write(chunk["data"])
    stream.flush()


def tell_waiting(task_id: str, state: dict[str, Any]) -> None:
    sys.stdout.flush()
    line = f"task {task_id} {state['status']}"
    err.print(f"{line}: {state['reason']}" if state["reason"] else line, soft_wrap=True)
    if state["status"] == "awaiting_approval":
        err.print(f"  approve: slotpool tasks approve {task_id}", soft_wrap=True)


@tasks_app.command("submit")
def submit(
    command: Annotated[
        list[str] | None, typer.Argument(help="The command, after --.", show_default=False)
    ] = None,
    pool: Annotated[
        str | None, typer.Option("--pool", help="Pool id or name (or `pool:` in the file).")
    ] = None,
    task_file: Annotated[
        Path | None,
        typer.Option(
            "--file",
            "-f",
            help="A task as YAML: name, env, labels, steps (each run or command; "
            "requires_approval, timeout_seconds), pool ('-' = stdin).",
        ),
    ] = None,
    name: Annotated[str | None, typer.Option(help="Task name.", show_default=False)] = None,
    env: Annotated[list[str] | None, typer.Option("--env", "-e", help="NAME=value")] = None,
    follow: Annotated[
        bool,
        typer.Option(
            "--follow",
            help="Print the log (the step's stderr on stderr) and what the task waits for; "
            "exit with the last step's exit code (see the codes below).",
        ),
    ] = False,
    url: UrlOption = DEFAULT_URL,
    token: TokenOption = None,
) -> None:
    """Submit a task: `slotpool tasks submit --pool demo -- echo hello`, or its steps from a
    file: `slotpool tasks submit -f task.yaml --follow`.

    With --follow the exit code is the task's: 0 succeeded; 1-255 the last step's own exit
    code; 128+N the step was killed by signal N; 120 lost (its Pod or agent went away);
    121 expired (no approval in time); 124 timed out; 125 cancelled; 126 the step could not
    start. 1 is also an error of the CLI (say the server cannot be reached), 2 a usage error.
    """
    body = task_body(command, task_file, name=name, env=env)
    pool_ref = pool or body.pop("pool", None)
    if not isinstance(pool_ref, str):
        raise UserError("which pool? give --pool NAME (or pool: NAME in the task file)")
    api = client(url, token)
    body["pool_id"] = api.find_pool(pool_ref)["pool_id"]
    task = api.json("POST", TASKS, json=body)
    err.print(f"task {task['id']} {task['status']}")
    if not follow:
        print(task["id"])
        return
    if task["status"] == "awaiting_approval":
        tell_waiting(task["id"], task)
    ended = _follow(api, task["id"], told=task)
    code = exit_code(ended)
    if code:
        sys.stdout.flush()
        err.print(f"task {ended['id']} {ended['status']}: {why_it_ended(ended)}".rstrip(": "))
    raise typer.Exit(code=code)


def why_it_ended(task: dict[str, Any]) -> str:
    """The task's reason, or its last step's message ("step 1 exited with code 3")."""
    if task["reason"]:
        return str(task["reason"])
    steps = [r for r in task["results"] if "step_index" in r]
    if not steps or not steps[-1].get("message"):
        return ""
    return f"step {steps[-1]['step_index'] + 1} {steps[-1]['message']}"


def task_body(
    command: list[str] | None, task_file: Path | None, *, name: str | None, env: list[str] | None
) -> dict[str, Any]:
    """The task to submit from the command line and the task file; ``pool`` is left in."""
    if (command is None) == (task_file is None):
        raise UserError("give the command after --, or a task file with -f (not both)")
    body: dict[str, Any] = (
        {"command": command} if task_file is None else dict(read_mapping(task_file, "a task"))
    )
    if name is not None:
        body["name"] = name
    pairs = [item.partition("=") for item in env or []]
    if any(not sep or not key for key, sep, _ in pairs):
        raise UserError("--env takes NAME=value")
    if pairs:
        file_env = body.get("env") or {}
        if not isinstance(file_env, dict):
            raise UserError("env in the task file must be a mapping of NAME: value")
        body["env"] = {**file_env, **{k: v for k, _, v in pairs}}
    return body


# The exit codes of `tasks submit --follow` for a task that did not succeed; a failed step's
# own code is passed on.
EXIT_LOST = 120
EXIT_EXPIRED = 121
EXIT_TIMED_OUT = 124
EXIT_CANCELLED = 125
EXIT_NOT_STARTED = 126
EXIT_SIGNAL_BASE = 128
STATUS_EXITS = {
    "lost": EXIT_LOST,
    "expired": EXIT_EXPIRED,
    "timed_out": EXIT_TIMED_OUT,
    "cancelled": EXIT_CANCELLED,
}
KILLED_BY = re.compile(r"killed by signal (SIG[A-Z0-9]+)")


def exit_code(task: dict[str, Any]) -> int:
    """The exit code that says how an ended task ended (see ``submit``)."""
    status = task["status"]
    if status == "succeeded":
        return 0
    if status != "failed":
        return STATUS_EXITS.get(status, 1)
    steps = [r for r in task["results"] if "step_index" in r]
    last = steps[-1] if steps else {}
    code = last.get("exit_code")
    if isinstance(code, int) and 0 < code < 256:
        return code
    killed = KILLED_BY.search(str(last.get("message", "")))
    if killed and killed.group(1) in signal.Signals.__members__:
        return EXIT_SIGNAL_BASE + signal.Signals[killed.group(1)].value
    return EXIT_NOT_STARTED


@tasks_app.command("list")
def list_tasks(
    pool: Annotated[str | None, typer.Option("--pool", help="Pool id or name.")] = None,
    status: Annotated[str | None, typer.Option(help="Only tasks in this state.")] = None,
    limit: Annotated[int, typer.Option(help="At most this many, newest first.")] = 50,
    url: UrlOption = DEFAULT_URL,
    token: TokenOption = None,
    output: OutputOption = Output.table,
) -> None:
    """List tasks, newest first."""
    api = client(url, token)
    params: dict[str, Any] = {"limit": limit}
    if status:
        params["status"] = status
    try:
        if pool:
            params["pool_id"] = api.find_pool(pool)["pool_id"]
        tasks = api.json("GET", TASKS, params=params)["items"]
    except ApiError as exc:
        raise fail(exc) from None
    show(tasks, output, _table)


@tasks_app.command("get")
def get(
    task_id: TaskArgument,
    url: UrlOption = DEFAULT_URL,
    token: TokenOption = None,
    output: OutputOption = Output.yaml,
) -> None:
    """Show one task with its steps and results."""
    try:
        task = client(url, token).json("GET", f"{TASKS}/{task_id}")
    except ApiError as exc:
        raise fail(exc) from None
    show(task, output, lambda one: _table([one]))


@tasks_app.command("logs")
def logs(
    task_id: TaskArgument,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Stream until it ends.")] = False,
    url: UrlOption = DEFAULT_URL,
    token: TokenOption = None,
) -> None:
    """Print a task's log: what its steps wrote to stderr on stderr, the rest on stdout."""
    api = client(url, token)
    if follow:
        _follow(api, task_id)
    else:
        for chunk in api.log(task_id):
            write(chunk)


def _act(action: str, task_id: str, url: str, token: str | None) -> None:
    try:
        task = client(url, token).json("POST", f"{TASKS}/{task_id}/{action}")
    except ApiError as exc:
        raise fail(exc) from None
    err.print(f"task {task['id']} {task['status']}")


@tasks_app.command("approve")
def approve(task_id: TaskArgument, url: UrlOption = DEFAULT_URL, token: TokenOption = None) -> None:
    """Approve the step a task waits at; it runs in the same slot and working directory."""
    _act("approve", task_id, url, token)


@tasks_app.command("cancel")
def cancel(task_id: TaskArgument, url: UrlOption = DEFAULT_URL, token: TokenOption = None) -> None:
    """Cancel a task in any state that has not ended."""
    _act("cancel", task_id, url, token)
