"""The access line of each request: refused ones too, the request id, who, and the setting that
leaves probes and scrapes out (``SLOTPOOL_ACCESS_LOG``)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from structlog.testing import capture_logs

from slotpool.api.app import create_app
from slotpool.store.migrate import upgrade
from tests.api.conftest import ADMIN_TOKEN, Api, settings_for
from tests.api.test_tasks_protocol import agent_client, pool_with_token
from tests.support.server import asgi_client

POOLS = "/api/v1/agent-pools"


async def logged(client: httpx.AsyncClient, method: str, path: str, **kwargs: Any) -> Any:
    """The answer and the access lines the request wrote."""
    with capture_logs() as logs:
        response = await client.request(method, path, **kwargs)
    return response, [line for line in logs if line["event"] == "request"]


async def test_refused_requests_have_their_line_with_who_was_refused(api: Api) -> None:
    response, (line,) = await logged(
        api.client, "POST", POOLS, content=b"x" * 10, headers={"Content-Length": "99999999"}
    )
    assert (response.status_code, line["status"], line["who"]) == (413, 413, None)
    pool_id, token = await pool_with_token(api)
    async with agent_client(api, token) as agent:
        other = "pool-aaaaaaaaaaaaaaaa"
        body = {
            "name": "a",
            "slots": 1,
            "version": "t",
            "running": [],
            "credential": "spa_" + "x" * 43,
        }
        response, (line,) = await logged(
            agent, "POST", f"/api/v1/agent/pools/{other}/register", json=body
        )
    assert response.status_code == 403
    assert (line["status"], line["who"], line["pool"]) == (403, f"pool-token:{pool_id}/t", pool_id)
    assert token not in str(line)


@pytest.mark.parametrize("sent", ["has spaces", "x" * 129, "semi;colon", "nul\x00"])
async def test_an_insane_request_id_is_replaced(api: Api, sent: str) -> None:
    response, (line,) = await logged(api.client, "GET", POOLS, headers={"X-Request-ID": sent})
    assert response.headers["X-Request-ID"] == line["request_id"] != sent
    assert len(line["request_id"]) == 32
    same, (line,) = await logged(api.client, "GET", POOLS, headers={"X-Request-ID": "ci:42.a-b_c"})
    assert same.headers["X-Request-ID"] == line["request_id"] == "ci:42.a-b_c"


@pytest.mark.parametrize(
    ("mode", "probes", "requests"), [("on", 0, 1), ("all", 3, 1), ("off", 0, 0)]
)
async def test_the_setting_leaves_out_probes_and_scrapes_or_everything(
    database_url: str, mode: str, probes: int, requests: int
) -> None:
    upgrade(database_url)
    app = create_app(settings_for(database_url, access_log=mode))
    async with asgi_client(app, ADMIN_TOKEN) as client:
        with capture_logs() as logs:
            for path in ("/healthz", "/readyz", "/metrics"):
                assert (await client.get(path)).status_code < 400  # /metrics: 307 or 200
            assert (await client.get(POOLS)).status_code == 200
    lines = [line for line in logs if line["event"] == "request"]
    assert len([line for line in lines if line["path"] != POOLS]) == probes
    assert len([line for line in lines if line["path"] == POOLS]) == requests
