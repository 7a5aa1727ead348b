"""/metrics on both databases: the pools' gauges come from the database at scrape time (every
replica answers alike), and SLOTPOOL_METRICS_TOKEN, if set, is required."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from slotpool.api.app import create_app
from slotpool.store.migrate import upgrade
from tests.api.conftest import ADMIN_TOKEN, Api, settings_for
from tests.support.server import asgi_client

POOLS = "/api/v1/agent-pools"


def gauges(text: str, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    return {
        tuple(sorted(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == name
    }


async def test_every_replica_exports_the_pools_gauges_from_the_database(api: Api) -> None:
    created = await api.client.post(POOLS, json={"name": "gate", "pool_type": "static"})
    pool_id = created.json()["pool_id"]
    for _ in range(2):
        body = {"pool_id": pool_id, "command": "true"}
        assert (await api.client.post("/api/v1/tasks", json=body)).status_code == 201
    # A second app on the same database: another replica, which did none of the work.
    other = create_app(settings_for(api.database_url))
    async with asgi_client(other, ADMIN_TOKEN) as replica:
        for client in (api.client, replica):
            answer = await client.get("/metrics", headers={"Authorization": ""})
            assert answer.status_code == 200
            tasks = gauges(answer.text, "slotpool_tasks")
            assert tasks[(("pool", "gate"), ("status", "queued"))] == 2
            assert tasks[(("pool", "gate"), ("status", "running"))] == 0
            assert gauges(answer.text, "slotpool_slots")[(("pool", "gate"), ("state", "idle"))] == 0
            assert gauges(answer.text, "slotpool_pool_frozen") == {(("pool", "gate"),): 0}


async def test_with_a_metrics_token_only_its_bearer_may_scrape(database_url: str) -> None:
    upgrade(database_url)
    app = create_app(settings_for(database_url, metrics_token="scrape-0123456789"))
    async with asgi_client(app, ADMIN_TOKEN) as client:
        for shown in ("", "Bearer wrong", f"Bearer {ADMIN_TOKEN}"):
            refused = await client.get("/metrics", headers={"Authorization": shown})
            assert refused.status_code == 401, shown
            assert refused.headers["www-authenticate"] == "Bearer"
            assert "SLOTPOOL_METRICS_TOKEN" in refused.json()["error"]
        allowed = await client.get(
            "/metrics", headers={"Authorization": "Bearer scrape-0123456789"}
        )
        assert allowed.status_code == 200
        assert "slotpool_build_info" in allowed.text
        assert allowed.headers["content-type"].startswith("text/plain; version=")
