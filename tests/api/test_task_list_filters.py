"""The task list across pools, filtered by who submitted (``created_by``), alone or with the pool
and status filters; a bad ``created_by`` is a 422 naming the field."""

from __future__ import annotations

import pytest

from tests.api.conftest import Api
from tests.api.test_admin_tokens_api import as_token, new_admin_token

TASKS = "/api/v1/tasks"


async def test_tasks_are_listed_by_submitter_across_pools(api: Api) -> None:
    pools = [
        (
            await api.client.post("/api/v1/agent-pools", json={"name": n, "pool_type": "static"})
        ).json()["pool_id"]
        for n in ("alpha", "beta")
    ]
    ci = as_token(api, await new_admin_token(api.client, "ci"))
    by_ci = [
        (await ci.post(TASKS, json={"pool_id": pool, "command": "true"})).json()["id"]
        for pool in pools
    ]
    mine = (await api.client.post(TASKS, json={"pool_id": pools[0], "command": "true"})).json()

    listed = await api.client.get(TASKS, params={"created_by": "ci"})
    assert listed.status_code == 200, listed.text
    assert sorted(t["id"] for t in listed.json()["items"]) == sorted(by_ci)
    assert listed.json()["total"] == 2
    assert {t["created_by"] for t in listed.json()["items"]} == {"ci"}

    both = await api.client.get(TASKS, params={"created_by": "ci", "pool_id": pools[1]})
    assert [t["id"] for t in both.json()["items"]] == [by_ci[1]]
    configured = await api.client.get(
        TASKS, params={"created_by": "configured", "status": "queued"}
    )
    assert [t["id"] for t in configured.json()["items"]] == [mine["id"]]
    nobody = await api.client.get(TASKS, params={"created_by": "nobody"})
    assert (nobody.json()["items"], nobody.json()["total"]) == ([], 0)


async def test_an_empty_submitter_is_a_422_naming_the_field(api: Api) -> None:
    response = await api.client.get(TASKS, params={"created_by": ""})
    assert response.status_code == 422
    fields = [d["field"] for d in response.json()["details"]]
    assert any("created_by" in f for f in fields), response.json()


async def test_a_submitter_with_a_nul_character_is_a_422_not_a_database_error(api: Api) -> None:
    """PostgreSQL cannot compare text with NUL in it: the filter is refused at the edge, on both
    databases alike, like every other free-text field."""
    response = await api.client.get(TASKS, params={"created_by": "[\x00x"})
    assert response.status_code == 422, response.text
    details = response.json()["details"]
    assert any("created_by" in d["field"] and "NUL" in d["message"] for d in details), details


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("DELETE", "/api/v1/admin-tokens/ci%00x"),
        ("DELETE", "/api/v1/agent-pools/{pool}/pods/agent%00x"),
        ("GET", "/api/v1/agent-pools/{pool}/pods/agent%00x/manifest"),
    ],
)
async def test_a_nul_character_in_a_free_text_path_is_a_422(
    api: Api, method: str, path: str
) -> None:
    pool = await api.client.post(
        "/api/v1/agent-pools", json={"name": "nul-paths", "pool_type": "static"}
    )
    assert pool.status_code == 201, pool.text
    url = path.format(pool=pool.json()["pool_id"])
    response = await api.client.request(method, url)
    assert response.status_code == 422, response.text
    assert any("NUL" in d["message"] for d in response.json()["details"]), response.json()
