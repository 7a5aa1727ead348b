"""The CLI against a real server: server strings printed as they are (never as rich markup), a
68 MB log given back whole, YAML aliases refused."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from slotpool.cli import app
from tests.api.conftest import ADMIN_TOKEN, settings_for
from tests.support.logs import write_log, written
from tests.support.server import live_server

runner = CliRunner()
MARKUP_NAMES = ("[/bold]", "[red]not red", ":thumbs_up: [link=x]y[/link]")
BILLION_LAUGHS = """\
name: lol
description: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]
b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]
i: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h]
"""


@pytest.fixture
def server(tmp_path: Path) -> Iterator[dict[str, str]]:
    database_url = f"sqlite:///{tmp_path}/slotpool.db"
    with live_server(settings_for(database_url)) as served:
        yield {
            "SLOTPOOL_URL": served.url,
            "SLOTPOOL_ADMIN_TOKEN": ADMIN_TOKEN,
            "DATABASE_URL": database_url,
            "COLUMNS": "200",
        }


def cli(env: dict[str, str], *args: str, code: int = 0) -> Any:
    result = runner.invoke(app, list(args), env=env)
    assert result.exit_code == code, (result.stdout, result.stderr, result.exception)
    return result


def api(env: dict[str, str]) -> httpx.Client:
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    return httpx.Client(base_url=env["SLOTPOOL_URL"], headers=headers, timeout=60)


def submit(env: dict[str, str], name: str) -> str:
    with api(env) as client:
        found = client.get("/api/v1/agent-pools", params={"name": "static"}).json()["items"]
        if found:
            pool_id = found[0]["pool_id"]
        else:
            body = {"name": "static", "pool_type": "static"}
            pool_id = client.post("/api/v1/agent-pools", json=body).json()["pool_id"]
        task = client.post("/api/v1/tasks", json={"pool_id": pool_id, "name": name, "command": "x"})
    assert task.status_code == 201, task.text
    task_id: str = task.json()["id"]
    return task_id


def test_task_names_like_markup_are_listed_as_they_are(server: dict[str, str]) -> None:
    ids = [submit(server, name) for name in MARKUP_NAMES]
    listed = cli(server, "tasks", "list").stdout
    for name in MARKUP_NAMES:
        assert name in listed, listed
    shown = cli(server, "tasks", "get", ids[0], "-o", "table").stdout
    assert "[/bold]" in shown


def test_error_messages_keep_their_brackets(server: dict[str, str]) -> None:
    result = cli(server, "tasks", "get", "task-NOT-AN-ID", code=1)
    assert "String should match pattern '^task-[a-z0-9]{16}$'" in result.stderr, result.stderr
    result = cli(server, "pools", "get", "[/bold]", code=1)
    assert "'^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$'" in result.stderr, result.stderr


def test_tasks_logs_gives_a_68_mb_log_back_whole(server: dict[str, str]) -> None:
    task_id = submit(server, "big log")
    log = asyncio.run(write_log(server["DATABASE_URL"], task_id))
    assert written(cli(server, "tasks", "logs", task_id).stdout) == log
    cli(server, "tasks", "cancel", task_id)  # ended: following it ends too
    assert written(cli(server, "tasks", "logs", task_id, "-f").stdout) == log


def test_apply_refuses_yaml_aliases_in_one_line(server: dict[str, str], tmp_path: Path) -> None:
    small = tmp_path / "alias.yaml"
    small.write_text("name: a\ndescription: &d shared\n---\nname: b\ndescription: *d\n")
    result = cli(server, "pools", "apply", "-f", str(small), code=1)
    assert result.stderr.strip().splitlines() == [
        f"error: {small}, line 2: anchors and aliases (&name, *name) are not accepted: "
        "write the values out"
    ]
    laughs = tmp_path / "laughs.yaml"
    laughs.write_text(BILLION_LAUGHS)
    started = time.monotonic()
    result = cli(server, "pools", "apply", "-f", str(laughs), code=1)
    assert "anchors and aliases" in result.stderr
    assert time.monotonic() - started < 5
    assert cli(server, "pools", "list", "-o", "json").stdout.strip() == "[]"
