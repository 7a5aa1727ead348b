"""``GET /api/v1/cluster`` on both databases, and one server per SQLite database."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

from slotpool.api.app import create_app
from slotpool.domain.config import PoolType
from slotpool.store.exclusive import hold_database, release_database
from slotpool.store.migrate import upgrade
from tests.api.conftest import ADMIN_TOKEN, Api, settings_for
from tests.support.fake_runtime import FakeRuntime
from tests.support.server import asgi_client


async def test_the_one_server_leads_and_lists_itself(api: Api) -> None:
    answer = await api.client.get("/api/v1/cluster")
    assert answer.status_code == 200, answer.text
    body = answer.json()
    me = api.settings.replica_id
    assert body["database"] == ("sqlite" if api.database_url.startswith("sqlite") else "postgresql")
    assert body["self"] == me
    assert body["lease_seconds"] == 15.0
    assert body["leader"]["replica_id"] == me
    assert body["leader"]["term"] >= 1
    assert body["leader"]["since"] <= body["leader"]["lease_expires_at"]
    assert body["leader"]["first_pass_at"] is None  # this server runs no controller
    (replica,) = body["replicas"]
    assert replica["replica_id"] == me
    assert replica["leader"]
    assert not replica["stopping"]
    assert replica["pod_settings"] == {
        "public_url": "http://slotpool.test:8080",
        "default_namespace": "slotpool-agents",
    }
    assert replica["agrees_with_leader"]
    assert replica["disagreements"] == []
    assert (await api.client.get("/readyz")).status_code == 200


async def test_the_cluster_is_for_admins(api: Api) -> None:
    answer = await api.client.get("/api/v1/cluster", headers={"Authorization": "Bearer nope"})
    assert answer.status_code == 401


async def test_the_first_pass_of_the_leaders_controller_is_recorded(database_url: str) -> None:
    upgrade(database_url)
    settings = settings_for(database_url)
    app = create_app(settings, runtimes={PoolType.k8s: FakeRuntime()})
    async with asgi_client(app, ADMIN_TOKEN) as client:
        for _ in range(400):
            leader = (await client.get("/api/v1/cluster")).json()["leader"]
            if leader["first_pass_at"] is not None:
                break
            await asyncio.sleep(0.05)
        assert leader["first_pass_at"] is not None
        assert leader["since"] <= leader["first_pass_at"]


async def test_a_restarted_sqlite_server_leads_at_once_with_a_new_term(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/slotpool.db"
    upgrade(url)
    terms = []
    for name in ("first", "second"):  # the first "crashed": it never gave the lease up
        settings = settings_for(url, replica_id=name)
        app = create_app(settings)
        async with asgi_client(app, ADMIN_TOKEN) as client:
            body = (await client.get("/api/v1/cluster")).json()
            assert body["leader"]["replica_id"] == name
            assert [r["replica_id"] for r in body["replicas"]] == [name]
            terms.append(body["leader"]["term"])
            if name == "first":
                app.state.cluster.lease = None  # as a crash: no hand-over
    assert terms[1] == terms[0] + 1


def test_a_second_holder_of_an_sqlite_database_is_refused(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/slotpool.db"
    held = hold_database(url, url="http://127.0.0.1:8080")
    try:
        assert held is not None
        assert held.name == "slotpool.db.lock"
        assert hold_database(url, url="ignored") == held  # this process again: counted
        release_database(held)
        # Another process (a child) is refused, told who holds it.
        code = (
            f"from slotpool.store.exclusive import hold_database\nhold_database({url!r}, url='x')\n"
        )
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
        assert done.returncode != 0
        assert "DatabaseInUse" in done.stderr
        assert "http://127.0.0.1:8080" in done.stderr
    finally:
        release_database(held)
    assert hold_database("postgresql://u@h/db", url="x") is None
