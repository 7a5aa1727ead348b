"""The server keeps working through a restart of its PostgreSQL server, without probing every
connection it takes from its pool (no ``pool_pre_ping``: that would cost a round trip per unit of
work). The connections the restart cut are found out when next used: the first request that
meets one fails, SQLAlchemy then drops every connection of the pool, and the requests after it
connect afresh."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from slotpool.api.app import create_app
from slotpool.store.migrate import upgrade
from tests.api.conftest import ADMIN_TOKEN, settings_for
from tests.support.clock import Clock
from tests.support.postgres import PostgresServer, PostgresUnavailableError
from tests.support.server import asgi_client

POOL = {"name": "work", "pool_type": "static", "k8s_config": {"slots_per_pod": 2}}
CONNECTIONS = 4  # requests at once before the restart: that many connections in the pool


@pytest.fixture
def own_postgres() -> Iterator[PostgresServer]:
    """A PostgreSQL server of this test's own: restarting the shared one would cut others'."""
    try:
        server = PostgresServer.start()
    except PostgresUnavailableError as exc:
        pytest.skip(f"no PostgreSQL server: {exc}")
    try:
        yield server
    finally:
        server.stop()


async def test_the_server_works_again_after_postgresql_restarts(
    own_postgres: PostgresServer,
) -> None:
    url = own_postgres.create_database("restart")
    upgrade(url)
    async with asgi_client(create_app(settings_for(url), clock=Clock()), ADMIN_TOKEN) as client:
        created = await client.post("/api/v1/agent-pools", json=POOL)
        assert created.status_code == 201, created.text
        pool_id = created.json()["pool_id"]
        submit = {"pool_id": pool_id, "command": "true"}
        before = await asyncio.gather(
            *(client.post("/api/v1/tasks", json=submit) for _ in range(CONNECTIONS))
        )
        assert [r.status_code for r in before] == [201] * CONNECTIONS

        own_postgres.restart()

        statuses = []
        for _ in range(CONNECTIONS + 2):
            statuses.append((await client.post("/api/v1/tasks", json=submit)).status_code)
        # At most the first request meets a cut connection, and says so (503: nothing was
        # saved, retry); SQLAlchemy drops the pool's other cut connections with it.
        assert statuses[0] in (201, 503), statuses
        assert statuses[1:] == [201] * (CONNECTIONS + 1), statuses
        listed = await client.get("/api/v1/tasks", params={"pool_id": pool_id})
        assert listed.json()["total"] == CONNECTIONS + statuses.count(201)
