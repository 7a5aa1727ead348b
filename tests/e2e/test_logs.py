"""The logs as an operator reads them: the server as its own process, a real local agent.

With ``SLOTPOOL_LOG_FORMAT=json`` every line either process writes, on standard output and on
standard error, is one JSON object (uvicorn's, Alembic's and SQLAlchemy's at debug level too);
each request has an access line and each admin change an audit line. An agent is quiet while
nothing happens."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import ADMIN
from tests.e2e.helpers import submit, until_final
from tests.e2e.test_local_pool import local_pool
from tests.support.ports import free_port
from tests.support.server import LOCAL_PODS, ServerProcess, server_process, server_settings

POOLS = "/api/v1/agent-pools"
SECRET_IN_QUERY = "query-value-that-must-not-be-logged"
SECRET_IN_ENV = "env-value-that-must-not-be-logged"

Line = dict[str, Any]


@pytest.fixture
def json_server(tmp_path: Path) -> Iterator[ServerProcess]:
    port = free_port()
    settings = server_settings(
        tmp_path, admin=ADMIN, port=port, log_format="json", log_level="debug"
    )
    with server_process(
        settings, tmp_path / "stdout.log", port=port, errors=tmp_path / "stderr.log"
    ) as running:
        yield running


def json_lines(path: Path) -> list[Line]:
    """Every line of ``path`` as a JSON object (the test fails on the first that is not)."""
    lines = []
    for number, text in enumerate(path.read_text().splitlines(), 1):
        if not text.strip():
            continue
        try:
            line = json.loads(text)
        except json.JSONDecodeError:
            pytest.fail(f"{path.name} line {number} is not JSON: {text[:300]}")
        assert isinstance(line, dict), text
        assert {"timestamp", "level", "logger", "event"} <= line.keys(), text
        lines.append(line)
    return lines


def one(lines: list[Line], **match: Any) -> Line:
    found = [line for line in lines if all(line.get(k) == v for k, v in match.items())]
    assert len(found) == 1, f"{len(found)} lines match {match}"
    return found[0]


def test_every_line_is_json_with_an_access_line_per_request_and_an_audit_line_per_change(
    json_server: ServerProcess, tmp_path: Path
) -> None:
    server = json_server
    with server.client() as admin, server.client(token="not-a-token") as stranger:
        refused = stranger.get(POOLS, headers={"X-Request-ID": "refused-1"})
        invalid = admin.post(POOLS, json={"name": 7, "pool_type": "local"})
        pool_id = local_pool(admin, pods=1, slots=2, name="logged")
        created = admin.get(f"{POOLS}/{pool_id}").json()
        edited = admin.patch(
            f"{POOLS}/{pool_id}",
            json={"description": "edited"},
            headers={"X-Request-ID": "edit-1", "If-Match": f'"{created["revision"]}"'},
        )
        listed = admin.get(POOLS, params={"token": SECRET_IN_QUERY})
        task_id = submit(admin, pool_id, command="echo hello", env={"SECRET": SECRET_IN_ENV})
        ran = until_final(admin, task_id)
    server.stop()  # every line written
    assert (refused.status_code, invalid.status_code, edited.status_code) == (401, 422, 200)
    assert refused.headers["X-Request-ID"] == "refused-1"
    assert listed.status_code == 200
    assert len(listed.headers["X-Request-ID"]) == 32
    assert ran["status"] == "succeeded"

    lines = json_lines(tmp_path / "stdout.log") + json_lines(tmp_path / "stderr.log")
    loggers = {line["logger"] for line in lines}
    assert {"uvicorn.error", "alembic.runtime.migration", "sqlalchemy.engine.Engine"} <= loggers
    everything = (tmp_path / "stdout.log").read_text() + (tmp_path / "stderr.log").read_text()
    for secret in (ADMIN, SECRET_IN_QUERY, SECRET_IN_ENV):
        assert secret not in everything

    access = [line for line in lines if line["logger"] == "slotpool.access"]
    assert all(
        {"request_id", "method", "path", "status", "duration_ms", "who"} <= a.keys() for a in access
    )
    assert all(isinstance(a["duration_ms"], float | int) and a["duration_ms"] >= 0 for a in access)
    line = one(access, request_id="refused-1")
    assert (line["method"], line["path"], line["status"], line["who"]) == ("GET", POOLS, 401, None)
    line = one(access, method="POST", path=POOLS, status=422)
    assert line["who"] == "admin:configured"
    assert one(access, method="POST", path=POOLS, status=201)["who"] == "admin:configured"
    assert one(access, request_id="edit-1")["status"] == 200
    registered = one(access, path=f"/api/v1/agent/pools/{pool_id}/register")
    assert registered["who"].startswith(f"pool-token:{pool_id}/")
    agent_calls = [a for a in access if a["path"].endswith("/claim")]
    assert agent_calls
    assert all(a["who"].startswith(f"agent:{pool_id}/") for a in agent_calls)
    assert all(a["pool"] == pool_id and a["pod"] == a["who"].split("/")[-1] for a in agent_calls)
    assert not any(a["path"] in ("/healthz", "/readyz") for a in access)  # probes: not logged

    audit = [line for line in lines if line["logger"] == "slotpool.audit"]
    create = one(audit, action="pool.create")
    assert (create["who"], create["pool_id"]) == ("configured", pool_id)
    assert (create["pool_name"], create["revision_before"], create["revision_after"]) == (
        "logged",
        None,
        created["revision"],
    )
    edit = one(audit, action="pool.edit")
    assert (edit["who"], edit["pool_id"]) == ("configured", pool_id)
    assert edit["fields"] == ["description"]
    assert (edit["revision_before"], edit["revision_after"]) == (
        created["revision"],
        created["revision"] + 1,
    )
    assert edit["request_id"] == "edit-1"  # the audit line names the request that made it
    submitted = one(audit, action="task.submit")
    assert (submitted["task_id"], submitted["pool_id"]) == (task_id, pool_id)
    assert all(line["action"] != "pool.create" for line in audit if line is not create)

    agent_logs = list((server.settings.data_dir / LOCAL_PODS).glob("*.log"))
    assert agent_logs, "the local agent wrote no log"
    agent_lines = [line for log in agent_logs for line in json_lines(log)]
    assert any(line["event"] == "agent registered" for line in agent_lines)


@pytest.fixture
def quick_heartbeats(tmp_path: Path) -> Iterator[ServerProcess]:
    port = free_port()
    settings = server_settings(
        tmp_path, admin=ADMIN, port=port, heartbeat_seconds=1, claim_wait_seconds=1
    )
    env = {"SLOTPOOL_LOG_LEVEL": "info", "SLOTPOOL_LOG_FORMAT": "console"}
    with server_process(settings, tmp_path / "server.log", port=port, extra_env=env) as running:
        yield running


def test_an_agent_running_tasks_writes_a_handful_of_lines(
    quick_heartbeats: ServerProcess,
) -> None:
    server = quick_heartbeats
    tasks = 4
    with server.client() as admin:
        pool_id = local_pool(admin, pods=1, slots=1, name="quiet")
        for number in range(tasks):
            task_id = submit(admin, pool_id, command=f"echo task {number}")
            assert until_final(admin, task_id)["status"] == "succeeded"
        time.sleep(4)  # idle: heartbeats and empty claims every second
    (log,) = (server.settings.data_dir / LOCAL_PODS).glob("*.log")
    lines = log.read_text().splitlines()
    said = "\n".join(lines)
    assert "HTTP Request" not in said, said
    assert "heartbeat" not in said, said
    # Registration and its set-up (three lines), a start and an end per task, nothing more.
    assert len(lines) <= 3 + 2 * tasks, said
    assert sum("step starts" in line for line in lines) == tasks, said
