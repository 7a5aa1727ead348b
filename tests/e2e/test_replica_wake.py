"""Two server processes on one PostgreSQL database: a task submitted through one reaches an agent
long-polling the other at once, not when the agent's claim runs out (``store/channel.py``).

The pool is static and its agent started by hand against server A, so neither server's
controller starts or stops anything (both run one until leadership decides which may). Each
claim waits up to a minute: a task that only reached the agent when its claim ran out would
take that long, and the test waits for less.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.helpers import submit, until_final, wait_for
from tests.e2e.test_local_pool import ready_pods
from tests.support.ports import free_port
from tests.support.postgres import PostgresServer
from tests.support.server import ServerProcess, server_process, server_settings
from tests.support.static_agent import static_agent, static_pool

pytestmark = pytest.mark.postgres
CLAIM_WAIT = 60  # the longest claim the server allows
SOONER = 30.0  # well before a claim runs out (the wake-ups take milliseconds)
ADMIN = "replica-admin-token-0123456789"


@pytest.fixture
def two_servers(pg_server: PostgresServer, tmp_path: Path) -> Iterator[list[ServerProcess]]:
    with (
        pg_server.temporary_database() as url,
        _server(tmp_path / "a", url) as a,
        _server(tmp_path / "b", url) as b,
    ):
        yield [a, b]


@contextlib.contextmanager
def _server(work: Path, url: str) -> Iterator[ServerProcess]:
    work.mkdir()
    port = free_port()
    settings = server_settings(
        work,
        admin=ADMIN,
        port=port,
        database_url=url,
        claim_wait_seconds=CLAIM_WAIT,
        local_runtime=False,
    )
    # A short grace: a claim still waiting on the server would hold its exit for the full one.
    with server_process(settings, work / "server.log", port=port, grace=2) as server:
        yield server


def test_a_task_submitted_on_one_server_reaches_an_agent_waiting_on_the_other(
    two_servers: list[ServerProcess], tmp_path: Path
) -> None:
    a, b = two_servers
    with a.client() as on_a, b.client() as on_b:
        pool_id, token = static_pool(on_a, "across")
        with static_agent(a.url, pool_id, token, name="agent-a", slots=1, work=tmp_path):
            wait_for(lambda: ready_pods(on_b, pool_id) == 1, what="the agent registered on A")
            for client in (on_b, on_a, on_b):  # the other server, its own, the other again
                task_id = submit(client, pool_id, command="echo ran")
                done = until_final(on_a, task_id, seconds=SOONER)
                assert done["status"] == "succeeded", done
                assert done["pod_name"] == "agent-a"
            assert on_b.get(f"/api/v1/tasks/{task_id}/logs").text == "ran\n"
