"""What a task of a local pool can reach of the server, tried as an attacker would, against a
server process whose agents and steps are real processes: another pool's token file, the
database (every task's env), the server's ``/proc/<pid>/environ`` and its environment (cloud
credentials, a database password, the admin token). Run as root, as these tests are here, the
agents run as ``nobody`` and the task gets none of them. And the server's files are its own
(0700/0600), the database is in its data directory, and a server stopped while it scales a local
pool up leaves no agent behind."""

from __future__ import annotations

import os
import signal
import stat
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from slotpool.domain.agent_spec import token_secret_name
from slotpool.store.migrate import upgrade
from tests.e2e.conftest import ADMIN, Server, api
from tests.e2e.helpers import TASKS, submit, until_final, wait_for
from tests.e2e.test_local_pool import local_pool
from tests.support import processes
from tests.support.ports import free_port
from tests.support.server import ServerProcess, server_process, server_settings

# What the server's environment holds and no task may see.
CLOUD_KEY = "aws-secret-marker-5b1d0c"
DATABASE_PASSWORD = "pgpassword-marker-77e0aa"
SERVER_SECRETS = {"AWS_SECRET_ACCESS_KEY": CLOUD_KEY, "PGPASSWORD": DATABASE_PASSWORD}
ANOTHER_TASKS_SECRET = "another-tasks-env-marker-0f3c9e"


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    port = free_port()
    settings = server_settings(tmp_path, admin=ADMIN, port=port)
    with server_process(
        settings, tmp_path / "server.log", port=port, extra_env=SERVER_SECRETS, grace=0
    ) as running:
        yield running


def test_a_task_of_a_local_pool_reaches_none_of_the_server_s_secrets(server: Server) -> None:
    data = server.settings.data_dir
    database = Path(server.settings.database_url.removeprefix("sqlite:///"))
    with api(server) as client:
        other = local_pool(client, pods=1, slots=1, name="other")
        theirs = submit(client, other, command="true", env={"DEPLOY_KEY": ANOTHER_TASKS_SECRET})
        assert until_final(client, theirs)["status"] == "succeeded"
        other_token_file = data / "local-runtime" / "secrets" / f"{token_secret_name(other)}.json"
        other_token = other_token_file.read_text()

        mine = local_pool(client, pods=1, slots=1, name="mine")
        attack = "; ".join(
            [
                "echo uid=$(id -u)",
                f"cat {other_token_file}",
                f"ls -la {data} {data}/local-runtime/secrets",
                f"cat {database} {database}-wal",
                f"tr '\\0' '\\n' </proc/{server.pid}/environ",
                "env",
                "echo attack done",
            ]
        )
        done = until_final(client, submit(client, mine, command=attack))
        log = client.get(f"{TASKS}/{done['id']}/logs").text

    assert "attack done" in log, log
    for secret in (CLOUD_KEY, DATABASE_PASSWORD, ADMIN, ANOTHER_TASKS_SECRET, other_token):
        assert secret not in log, f"the task read {secret!r}:\n{log}"
    assert f"uid={65534 if os.geteuid() == 0 else os.geteuid()}" in log
    assert "SQLite format 3" not in log
    assert "Permission denied" in log


def test_the_server_s_files_are_its_own_and_the_database_is_in_its_data_directory(
    tmp_path: Path,
) -> None:
    port = free_port()
    settings = server_settings(tmp_path, admin=ADMIN, port=port)
    data = settings.data_dir
    # As an older version left them: a data directory and a database anyone could read.
    data.mkdir(mode=0o755)
    data.chmod(0o755)
    upgrade(f"sqlite:///{data / 'slotpool.db'}")
    (data / "slotpool.db").chmod(0o644)
    # The server's default database: no SLOTPOOL_DATABASE_URL (and an empty home).
    env = {"XDG_DATA_HOME": str(tmp_path / "home-data")}
    server = ServerProcess.of(settings, tmp_path / "server.log", port=port, extra_env=env)
    del server.env["SLOTPOOL_DATABASE_URL"]
    try:
        server.start_again()
        with api(server) as client:
            pool_id = local_pool(client, pods=1, slots=1, name="private")
        runtime = data / "local-runtime"
        token_file = runtime / "secrets" / f"{token_secret_name(pool_id)}.json"
        database = [data / f"slotpool.db{suffix}" for suffix in ("", "-wal", "-shm")]
        modes = {path: mode_of(path) for path in [data, runtime, *runtime.iterdir(), token_file]}
        modes |= {path: mode_of(path) for path in database}
    finally:
        server.stop(grace=0)

    assert not (tmp_path / "home-data" / "slotpool").exists(), "the database is not in the data dir"
    expected = {path: 0o700 if path.is_dir() else 0o600 for path in modes}
    assert modes == expected


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_a_server_stopped_during_a_scale_up_leaves_no_agent_behind(server: Server) -> None:
    with api(server) as client:
        body = {
            "name": "scaling",
            "pool_type": "local",
            "k8s_config": {"min_replicas": 6, "max_replicas": 6, "slots_per_pod": 1},
        }
        response = client.post("/api/v1/agent-pools", json=body)
        assert response.status_code == 201, response.text
        pool_id = response.json()["pool_id"]
    wait_for(lambda: agents_of(pool_id), what="the first agents to start", seconds=30)

    assert server.process is not None
    server.process.send_signal(signal.SIGTERM)
    server.process.wait(timeout=60)

    deadline = time.monotonic() + 5  # an agent that just got its SIGTERM may take a moment
    while agents_of(pool_id) and time.monotonic() < deadline:
        time.sleep(0.1)
    left = {pid: processes.command_line(pid) for pid in agents_of(pool_id)}
    assert left == {}, f"agents outlived the server: {left}\n{server.tail()}"


def agents_of(pool_id: str) -> list[int]:
    """Every live agent process of ``pool_id`` on this machine, recorded by a runtime or not."""
    return [
        pid
        for pid in processes.pids()
        if "slotpool.agent" in processes.command_line(pid)
        and processes.alive(pid)
        and processes.environment(pid).get("SLOTPOOL_POOL_ID") == pool_id
    ]
