"""Concurrent writers against a real server over HTTP, on SQLite and PostgreSQL: a pool's revision
moves by exactly one per write that won, ``If-Match`` lets exactly one of many writers through, and
a gate is approved exactly once.

The server is its own process, as deployed (``server_process``), and the requests are sent at once,
each on its own connection, so the units of work really overlap in the database (on PostgreSQL,
each on a connection of its own there too).
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.api.conftest import ADMIN_TOKEN
from tests.api.test_pools_api import POOLS, SEED_RIGHT
from tests.support.server import server_process, server_settings

ROUNDS = 5
WRITERS = 10
APPROVERS = 40


@pytest.fixture
async def client(database_url: str, tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    settings = server_settings(
        tmp_path, admin=ADMIN_TOKEN, database_url=database_url, local_runtime=False
    )
    with server_process(settings, tmp_path / "server.log") as served:
        limits = httpx.Limits(max_connections=APPROVERS)
        async with httpx.AsyncClient(
            base_url=served.url,
            headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
            timeout=60,
            limits=limits,
        ) as http:
            yield http


async def new_pool(client: httpx.AsyncClient, name: str, pool_type: str = "k8s") -> str:
    created = await client.post(POOLS, json={"name": name, "pool_type": pool_type})
    assert created.status_code == 201, created.text
    pool_id: str = created.json()["pool_id"]
    return pool_id


def config_with_env(writer: int) -> dict[str, Any]:
    return {**SEED_RIGHT, "env": {"WRITER": str(writer)}}


async def test_ten_puts_with_one_if_match_let_exactly_one_through(
    client: httpx.AsyncClient,
) -> None:
    for round_ in range(ROUNDS):
        pool_id = await new_pool(client, f"put-{round_}")
        path = f"{POOLS}/{pool_id}/k8s-config"
        etag = (await client.get(path)).headers["ETag"]
        answers = await asyncio.gather(
            *(
                client.put(path, json=config_with_env(w), headers={"If-Match": etag})
                for w in range(WRITERS)
            )
        )
        codes = Counter(a.status_code for a in answers)
        assert codes == {200: 1, 412: WRITERS - 1}, (round_, codes)
        (won,) = [a.json() for a in answers if a.status_code == 200]
        assert won["revision"] == 2
        lost = next(a.json() for a in answers if a.status_code == 412)
        assert "read it again and retry" in lost["error"]
        saved = await client.get(path)
        assert saved.headers["ETag"] == '"2"'
        assert saved.json()["env"] == won["k8s_config"]["env"], "the winner's config is stored"


async def test_concurrent_patches_with_one_if_match_let_exactly_one_through(
    client: httpx.AsyncClient,
) -> None:
    for round_ in range(ROUNDS):
        pool_id = await new_pool(client, f"patched-{round_}")
        path = f"{POOLS}/{pool_id}"
        answers = await asyncio.gather(
            *(
                client.patch(path, json={"description": f"by {w}"}, headers={"If-Match": '"1"'})
                for w in range(WRITERS)
            )
        )
        assert Counter(a.status_code for a in answers) == {200: 1, 412: WRITERS - 1}, round_
        (won,) = [a.json() for a in answers if a.status_code == 200]
        stored = (await client.get(path)).json()
        assert (stored["description"], stored["revision"]) == (won["description"], 2)


async def test_concurrent_writes_without_if_match_each_move_the_revision_once(
    client: httpx.AsyncClient,
) -> None:
    """Freeze windows added at once by ten writers: every window is kept (none overwrote
    another's list) and the revision moved by exactly ten."""
    pool_id = await new_pool(client, "windows")
    path = f"{POOLS}/{pool_id}/freeze-schedules"
    windows: list[dict[str, Any]] = [
        {"from_time": f"{h:02d}:00", "to_time": f"{h:02d}:30", "weekdays": [1]}
        for h in range(WRITERS)
    ]
    answers = await asyncio.gather(*(client.post(path, json=w) for w in windows))
    assert [a.status_code for a in answers] == [201] * WRITERS, [a.text for a in answers]
    kept = (await client.get(path)).json()["items"]
    assert sorted(str(w["from_time"]) for w in kept) == [w["from_time"] for w in windows]
    pool = (await client.get(f"{POOLS}/{pool_id}")).json()
    assert pool["revision"] == 1 + WRITERS


async def test_forty_approvals_of_one_gate_approve_it_once(client: httpx.AsyncClient) -> None:
    pool_id = await new_pool(client, "gated", pool_type="static")
    for round_ in range(ROUNDS):
        submitted = await client.post(
            "/api/v1/tasks",
            json={
                "pool_id": pool_id,
                "name": f"apply-{round_}",
                "steps": [{"run": "terraform apply", "requires_approval": True}],
            },
        )
        assert submitted.status_code == 201, submitted.text
        task = submitted.json()
        assert task["status"] == "awaiting_approval"
        path = f"/api/v1/tasks/{task['id']}/approve"
        answers = await asyncio.gather(*(client.post(path) for _ in range(APPROVERS)))
        codes = Counter(a.status_code for a in answers)
        assert codes == {200: 1, 409: APPROVERS - 1}, (round_, codes)
        approved = (await client.get(f"/api/v1/tasks/{task['id']}")).json()
        approvals = [r for r in approved["results"] if "approved_by" in r]
        assert len(approvals) == 1, approved["results"]
