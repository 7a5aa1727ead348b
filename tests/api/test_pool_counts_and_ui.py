"""Pod, slot and queue counts on the pools API, and the web UI served beside the API."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from slotpool.api.app import create_app
from slotpool.settings import Settings
from tests.api.conftest import Api
from tests.api.test_pools_api import POOLS, create_pool
from tests.api.test_tasks_protocol import FakeAgent, agent_client, pool_with_token, submit

COUNTS = ("pods_ready", "pods_total", "slots_busy", "slots_reserved", "slots_total", "queued_tasks")


def counts(pool: dict[str, object]) -> dict[str, object]:
    return {key: pool[key] for key in COUNTS}


async def test_pools_carry_their_pod_slot_and_queue_counts(api: Api) -> None:
    pool_id, token = await pool_with_token(api, "busy")
    idle = await create_pool(api, "idle", pool_type="static")
    async with agent_client(api, token) as http:
        await FakeAgent(http, pool_id, "a").register(2)
        await FakeAgent(http, pool_id, "b").register(2)
        for n in range(3):
            await submit(api, pool_id, command=f"echo {n}")
        await submit(
            api,
            pool_id,
            steps=[{"run": "plan"}, {"run": "apply", "requires_approval": True}],
        )
        await submit(api, pool_id, command="waits")
        await submit(api, pool_id, command="waits too")

        want = {
            "pods_ready": 2,  # registered agents
            "pods_total": 2,
            "slots_busy": 4,
            "slots_reserved": 0,
            "slots_total": 4,
            "queued_tasks": 2,
        }
        listed = (await api.client.get(POOLS)).json()["items"]
        by_name = {p["name"]: p for p in listed}
        one = (await api.client.get(f"{POOLS}/{pool_id}")).json()
    assert counts(by_name["busy"]) == want
    assert counts(one) == want
    assert counts(by_name["idle"]) == dict.fromkeys(COUNTS, 0)
    assert counts(idle) == dict.fromkeys(COUNTS, 0)  # the create answer has them too


@pytest.fixture
def ui_dir(tmp_path: Path) -> Path:
    (tmp_path / "assets").mkdir()
    (tmp_path / "index.html").write_text("<!doctype html><title>slotpool ui</title>")
    (tmp_path / "assets" / "app.js").write_text("console.log('ui')")
    return tmp_path


def client_for(ui_dir: Path | None, tmp_path: Path) -> httpx.AsyncClient:
    settings = Settings(
        database_url=f"sqlite:///{tmp_path}/unused.db",
        local_runtime=False,
        ui_dir=ui_dir or tmp_path / "no-ui-here",
    )
    transport = httpx.ASGITransport(app=create_app(settings))
    return httpx.AsyncClient(transport=transport, base_url="http://slotpool.test")


async def test_the_ui_is_served_with_a_fallback_that_never_shadows_the_api(
    ui_dir: Path, tmp_path: Path
) -> None:
    async with client_for(ui_dir, tmp_path) as client:
        for path in ("/", "/pools/pool-0123456789abcdef/config", "/tasks/task-x"):
            page = await client.get(path)
            assert page.status_code == 200, path
            assert "slotpool ui" in page.text, path
        asset = await client.get("/assets/app.js")
        assert asset.text == "console.log('ui')"

        for method in ("GET", "POST"):
            unknown = await client.request(method, "/api/v1/no-such-thing")
            assert unknown.status_code == 404, method
            assert unknown.json()["error"] == "Not Found"
        wrong_method = await client.put(POOLS)
        assert wrong_method.status_code == 405
        assert (await client.get("/openapi.json")).json()["info"]["title"] == "slotpool"
        assert "swagger" in (await client.get("/docs")).text.lower()
        assert (await client.get("/healthz")).status_code == 200


async def test_without_a_built_ui_the_api_still_runs(tmp_path: Path) -> None:
    async with client_for(None, tmp_path) as client:
        assert (await client.get("/")).status_code == 404
        assert (await client.get("/healthz")).status_code == 200
