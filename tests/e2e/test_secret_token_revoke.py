"""Revoking the token a pool's Secret holds, on a real server with a real agent process, on SQLite
and PostgreSQL: refused (409) with the way to rotate it, while the task running with it goes on;
the rotation it names then replaces the token and revokes the old one once no Pod runs with it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from slotpool.cli import app
from tests.e2e.conftest import ADMIN, Server, api
from tests.e2e.helpers import submit, task, until_final, wait_for
from tests.e2e.test_local_pool import local_pool
from tests.support.ports import free_port
from tests.support.server import server_process, server_settings

runner = CliRunner()


@pytest.fixture
def server(database_url: str, tmp_path: Path) -> Iterator[Server]:
    port = free_port()
    settings = server_settings(tmp_path, admin=ADMIN, port=port, database_url=database_url)
    with server_process(settings, tmp_path / "server.log", port=port, grace=0) as running:
        yield running


def test_the_secret_token_is_rotated_not_revoked(server: Server, shared: Path) -> None:
    release = shared / "release"
    cli_env = {"SLOTPOOL_URL": server.url, "SLOTPOOL_ADMIN_TOKEN": ADMIN}
    with api(server) as client:
        pool_id = local_pool(client, pods=1, slots=1)
        tokens = f"/api/v1/agent-pools/{pool_id}/tokens"
        held = client.get(f"/api/v1/agent-pools/{pool_id}").json()["agent_token"]
        assert held, "the local runtime put a token in the pool's Secret"
        task_id = submit(
            client, pool_id, command=f"until [ -e {release} ]; do sleep 0.1; done; echo done"
        )
        wait_for(lambda: task(client, task_id)["status"] == "running", what="the task to run")

        refused = client.delete(f"{tokens}/{held}")
        assert refused.status_code == 409, refused.text
        message = refused.json()["error"]
        assert f"POST /api/v1/agent-pools/{pool_id}/tokens/{held}/rotate" in message
        assert f"slotpool tokens rotate {pool_id} {held}" in message
        assert client.get(f"{tokens}/{held}").json()["status"] == "active"
        by_cli = runner.invoke(app, ["tokens", "revoke", pool_id, held], env=cli_env)
        assert by_cli.exit_code == 1
        assert "slotpool tokens rotate" in " ".join(by_cli.stderr.split())

        release.touch()
        done = until_final(client, task_id)
        assert done["status"] == "succeeded", done
        assert client.get(f"/api/v1/tasks/{task_id}/logs").text == "done\n"

        rotated = runner.invoke(app, ["tokens", "rotate", pool_id, held], env=cli_env)
        assert rotated.exit_code == 0, (rotated.stdout, rotated.stderr)
        assert "the Secret now holds" in rotated.stderr
        assert rotated.stdout == "", "the Secret's new value is never shown"
        new = client.get(f"/api/v1/agent-pools/{pool_id}").json()["agent_token"]
        assert new != held
        wait_for(
            lambda: client.get(f"{tokens}/{held}").json()["status"] == "revoked",
            what="the rotated-out token to be revoked once no Pod runs with it",
        )
        after = submit(client, pool_id, command="echo after")
        assert until_final(client, after)["status"] == "succeeded"
