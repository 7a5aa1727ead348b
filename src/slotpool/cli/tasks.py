"""`slotpool tasks`: submit, list, get, logs (follow), approve, cancel."""

from __future__ import annotations

import sys
from typing import Annotated, Any

import typer
from rich.table import Table

from slotpool.cli.common import (
    DEFAULT_URL,
    Output,
    OutputOption,
    TokenOption,
    UrlOption,
    client,
    err,
    error,
    fail,
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


def _follow(api: Client, task_id: str) -> dict[str, Any]:
    """Print the log as it grows; returns the task once it has ended."""
    with api.stream("GET", f"{TASKS}/{task_id}/logs", params={"follow": "true"}) as lines:
        for text in lines:
            sys.stdout.write(text)
            sys.stdout.flush()
    task: dict[str, Any] = api.json("GET", f"{TASKS}/{task_id}")
    return task


def _exit_for(task: dict[str, Any]) -> None:
    if task["status"] != "succeeded":
        err.print(f"task {task['id']} {task['status']}: {task['reason']}".rstrip(": "))
        raise typer.Exit(code=1)


@tasks_app.command("submit")
def submit(
    command: Annotated[list[str], typer.Argument(help="The command, after --.")],
    pool: Annotated[str, typer.Option("--pool", help="Pool id or name.")],
    name: Annotated[str, typer.Option(help="Task name.")] = "",
    env: Annotated[list[str] | None, typer.Option("--env", "-e", help="NAME=value")] = None,
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Print the log; exit 1 unless it succeeds.")
    ] = False,
    url: UrlOption = DEFAULT_URL,
    token: TokenOption = None,
) -> None:
    """Submit a one-step task: `slotpool tasks submit --pool demo -- echo hello`."""
    pairs = [item.partition("=") for item in env or []]
    if any(not sep for _, sep, _ in pairs):
        error("--env takes NAME=value")
        raise typer.Exit(code=2)
    api = client(url, token)
    try:
        pool_id = api.find_pool(pool)["pool_id"]
        body = {
            "pool_id": pool_id,
            "name": name,
            "command": command,
            "env": {k: v for k, _, v in pairs},
        }
        task = api.json("POST", TASKS, json=body)
        err.print(f"task {task['id']} {task['status']}")
        if follow:
            _exit_for(_follow(api, task["id"]))
        else:
            print(task["id"])
    except ApiError as exc:
        raise fail(exc) from None


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
    """Print a task's log."""
    api = client(url, token)
    try:
        if follow:
            _follow(api, task_id)
        else:
            for page in api.log(task_id):
                sys.stdout.write(page)
    except ApiError as exc:
        raise fail(exc) from None


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
