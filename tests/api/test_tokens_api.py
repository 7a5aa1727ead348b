"""Agent tokens: shown once, stored hashed, scoped to their pool, expiring and revocable."""

from __future__ import annotations

import hashlib
from datetime import timedelta

import httpx
from sqlalchemy import create_engine, text

from slotpool.store.db import sync_url
from tests.api.conftest import Api
from tests.api.test_pools_api import POOLS, create_pool


async def new_token(api: Api, pool_id: str, name: str = "agents", **body: str) -> dict[str, str]:
    response = await api.client.post(f"{POOLS}/{pool_id}/tokens", json={"name": name, **body})
    assert response.status_code == 201, response.text
    created: dict[str, str] = response.json()
    return created


async def as_agent(api: Api, token: str | None, pool_id: str) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with httpx.AsyncClient(
        transport=api.client._transport, base_url="http://slotpool.test", headers=headers
    ) as agent:
        return await agent.get(f"/api/v1/agent/pools/{pool_id}")


async def test_a_token_is_shown_once_and_stored_hashed(api: Api) -> None:
    pool = await create_pool(api, k8s_config={"image": "busybox", "slots_per_pod": 3})
    created = await new_token(api, pool["pool_id"])
    value = created["token"]
    assert value.startswith("spt_")
    assert len(value) > 40
    assert created["status"] == "active"
    listed = (await api.client.get(f"{POOLS}/{pool['pool_id']}/tokens")).json()["items"]
    assert [t["name"] for t in listed] == ["agents"]
    assert "token" not in listed[0]
    engine = create_engine(sync_url(api.database_url))
    with engine.connect() as connection:
        stored = connection.execute(text("SELECT token_hash FROM pool_tokens")).scalars().all()
    engine.dispose()
    assert stored == [hashlib.sha256(value.encode()).hexdigest()]
    me = await as_agent(api, value, pool["pool_id"])
    assert me.status_code == 200
    assert me.json()["slots_per_pod"] == 3
    assert me.json()["token_name"] == "agents"


async def test_a_token_of_pool_a_cannot_act_for_pool_b(api: Api) -> None:
    a = await create_pool(api, "a", pool_type="local")
    b = await create_pool(api, "b", pool_type="local")
    token_a = (await new_token(api, a["pool_id"]))["token"]
    response = await as_agent(api, token_a, b["pool_id"])
    assert response.status_code == 403
    assert a["pool_id"] in response.json()["error"]


async def test_revoked_expired_unknown_and_missing_tokens_get_401(api: Api) -> None:
    pool = await create_pool(api, pool_type="static")
    pool_id = pool["pool_id"]
    revoked = (await new_token(api, pool_id, "old"))["token"]
    gone = await api.client.delete(f"{POOLS}/{pool_id}/tokens/old")
    assert gone.status_code == 200
    assert gone.json()["status"] == "revoked"
    response = await as_agent(api, revoked, pool_id)
    assert response.status_code == 401
    assert "revoked" in response.json()["error"]
    until = (api.clock.now + timedelta(hours=1)).isoformat()
    expiring = (await new_token(api, pool_id, "short", expires_at=until))["token"]
    assert (await as_agent(api, expiring, pool_id)).status_code == 200
    api.clock.advance(hours=2)
    expired = await as_agent(api, expiring, pool_id)
    assert expired.status_code == 401
    assert "expired" in expired.json()["error"]
    assert (await as_agent(api, "spt_unknown", pool_id)).status_code == 401
    assert (await as_agent(api, None, pool_id)).status_code == 401


async def test_admin_tokens_are_not_agent_tokens_and_back(api: Api) -> None:
    pool = await create_pool(api, pool_type="local")
    agent_token = (await new_token(api, pool["pool_id"]))["token"]
    admin_token = api.client.headers["Authorization"].removeprefix("Bearer ")
    assert (await as_agent(api, admin_token, pool["pool_id"])).status_code == 401
    async with httpx.AsyncClient(
        transport=api.client._transport,
        base_url="http://slotpool.test",
        headers={"Authorization": f"Bearer {agent_token}"},
    ) as agent:
        assert (await agent.get(POOLS)).status_code == 401


async def test_token_rules(api: Api) -> None:
    pool = await create_pool(api, pool_type="local")
    base = f"{POOLS}/{pool['pool_id']}/tokens"
    await new_token(api, pool["pool_id"], "one")
    duplicate = await api.client.post(base, json={"name": "one"})
    assert duplicate.status_code == 409
    bad_name = await api.client.post(base, json={"name": "Not OK"})
    assert bad_name.status_code == 422
    assert bad_name.json()["details"][0]["field"] == "name"
    past = await api.client.post(base, json={"name": "two", "expires_at": "2020-01-01T00:00:00Z"})
    assert past.status_code == 422
    assert past.json()["details"] == [{"field": "expires_at", "message": "must be in the future"}]
    assert (await api.client.get(f"{base}/missing")).status_code == 404
    assert (await api.client.delete(f"{base}/missing")).status_code == 404
    assert (await api.client.get(f"{POOLS}/pool-0000000000000000/tokens")).status_code == 404
    assert [t["name"] for t in (await api.client.get(base)).json()["items"]] == ["one"]


async def test_deleting_a_pool_deletes_its_tokens(api: Api) -> None:
    pool = await create_pool(api, pool_type="local")
    token = (await new_token(api, pool["pool_id"]))["token"]
    assert (await api.client.delete(f"{POOLS}/{pool['pool_id']}")).status_code == 204
    assert (await as_agent(api, token, pool["pool_id"])).status_code == 401


async def test_rotating_a_token_hands_out_a_successor_and_keeps_the_old_one_for_the_overlap(
    api: Api,
) -> None:
    pool = await create_pool(api, k8s_config={"image": "busybox"})
    pool_id = pool["pool_id"]
    old = await new_token(api, pool_id, "ci")
    response = await api.client.post(
        f"{POOLS}/{pool_id}/tokens/ci/rotate", json={"overlap_seconds": 600}
    )
    assert response.status_code == 200, response.text
    rotated = response.json()
    assert rotated["secret"] is False
    assert rotated["rebuild"] is None
    assert rotated["new"]["name"].startswith("ci-")
    assert rotated["token"].startswith("spt_")
    assert rotated["old"]["name"] == "ci"
    assert rotated["old"]["status"] == "active"
    expires = rotated["old"]["expires_at"]
    assert expires is not None
    # Both work during the overlap; the old one stops when it ends.
    assert (await as_agent(api, old["token"], pool_id)).status_code == 200
    assert (await as_agent(api, rotated["token"], pool_id)).status_code == 200
    api.clock.advance(seconds=601)
    assert (await as_agent(api, old["token"], pool_id)).status_code == 401
    assert (await as_agent(api, rotated["token"], pool_id)).status_code == 200

    again = await api.client.post(f"{POOLS}/{pool_id}/tokens/ci/rotate", json={})
    assert again.status_code == 409, again.text  # an expired token has nothing to rotate
    bad = await api.client.post(
        f"{POOLS}/{pool_id}/tokens/{rotated['new']['name']}/rotate",
        json={"overlap_seconds": -1},
    )
    assert bad.status_code == 422
    assert bad.json()["details"][0]["field"] == "overlap_seconds"
