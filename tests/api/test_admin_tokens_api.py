"""Named admin tokens on SQLite and PostgreSQL: listed (never their values), created with a unique
name and an optional expiry, revoked; what a token does is recorded under its name; a revoked or
expired token is told so; the last token that works cannot be revoked."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any

import httpx
from pydantic import SecretStr

from slotpool.api.app import create_app
from slotpool.settings import Settings
from slotpool.store.migrate import upgrade
from tests.api.conftest import Api, settings_for
from tests.api.test_pools_api import POOLS, create_pool
from tests.support.clock import Clock
from tests.support.server import asgi_client

ADMIN_TOKENS = "/api/v1/admin-tokens"


def as_token(api: Api, token: str) -> httpx.AsyncClient:
    return as_client(api.client, token)


async def new_admin_token(client: httpx.AsyncClient, name: str, **body: Any) -> str:
    created = await client.post(ADMIN_TOKENS, json={"name": name, **body})
    assert created.status_code == 201, created.text
    assert created.json()["name"] == name
    value: str = created.json()["token"]
    return value


async def listed(client: httpx.AsyncClient) -> dict[str, dict[str, Any]]:
    response = await client.get(ADMIN_TOKENS)
    assert response.status_code == 200, response.text
    return {t["name"]: t for t in response.json()["items"]}


async def test_tokens_are_listed_by_name_without_values(api: Api) -> None:
    value = await new_admin_token(api.client, "ci")
    assert value.startswith("spa_")
    tokens = await listed(api.client)
    assert list(tokens) == ["configured", "ci"]
    assert tokens["configured"]["configured"] is True
    assert tokens["configured"]["status"] == "active"
    ci = tokens["ci"]
    assert (ci["configured"], ci["status"], ci["created_by"]) == (False, "active", "configured")
    assert ci["expires_at"] is None
    assert ci["last_used_at"] is None
    assert "token" not in ci
    assert value not in (await api.client.get(ADMIN_TOKENS)).text


async def test_what_a_token_does_is_recorded_under_its_name(api: Api) -> None:
    value = await new_admin_token(api.client, "ci")
    async with as_token(api, value) as ci:
        pool = await create_pool(api, pool_type="static")  # as the configured token
        pool_id = pool["pool_id"]
        assert pool["created_by"] == "configured"
        patched = await ci.patch(f"{POOLS}/{pool_id}", json={"description": "by ci"})
        assert patched.json()["updated_by"] == "ci"
        created = await ci.post(f"{POOLS}/{pool_id}/tokens", json={"name": "agents"})
        assert created.json()["created_by"] == "ci"
        assert (await ci.delete(f"{POOLS}/{pool_id}/tokens/agents")).status_code == 200
        events = (await ci.get(f"{POOLS}/{pool_id}/events")).json()["items"]
        assert [e["message"] for e in events] == ["ci revoked the agent token agents"]
        steps = [{"run": "terraform apply", "requires_approval": True}]
        task = (await ci.post("/api/v1/tasks", json={"pool_id": pool_id, "steps": steps})).json()
        assert task["created_by"] == "ci"
        approved = (await api.client.post(f"/api/v1/tasks/{task['id']}/approve")).json()
        assert approved["results"][-1]["approved_by"] == "configured"
        second = await new_admin_token(ci, "made-by-ci")
        assert second.startswith("spa_")
    assert (await listed(api.client))["made-by-ci"]["created_by"] == "ci"


async def test_names_are_unique_and_checked(api: Api) -> None:
    await new_admin_token(api.client, "ci")
    again = await api.client.post(ADMIN_TOKENS, json={"name": "ci"})
    assert again.status_code == 409
    assert "'ci' already exists" in again.json()["error"]
    reserved = await api.client.post(ADMIN_TOKENS, json={"name": "configured"})
    assert reserved.status_code == 422
    assert reserved.json()["details"] == [
        {"field": "name", "message": "'configured' is the name of SLOTPOOL_ADMIN_TOKEN"}
    ]
    bad = await api.client.post(ADMIN_TOKENS, json={"name": "Not A Name"})
    assert bad.status_code == 422
    assert bad.json()["details"][0]["field"] == "name"
    past = (api.clock.now - timedelta(minutes=1)).isoformat()
    late = await api.client.post(ADMIN_TOKENS, json={"name": "late", "expires_at": past})
    assert late.status_code == 422
    assert late.json()["details"][0]["field"] == "expires_at"
    assert list(await listed(api.client)) == ["configured", "ci"]


async def test_an_expired_token_is_told_so_and_use_is_recorded_once_a_minute(api: Api) -> None:
    until = api.clock.now + timedelta(hours=1)
    value = await new_admin_token(api.client, "nightly", expires_at=until.isoformat())
    async with as_token(api, value) as nightly:
        assert (await nightly.get(POOLS)).status_code == 200
        first_use = (await listed(api.client))["nightly"]["last_used_at"]
        assert first_use is not None
        api.clock.advance(seconds=30)
        assert (await nightly.get(POOLS)).status_code == 200
        assert (await listed(api.client))["nightly"]["last_used_at"] == first_use
        api.clock.advance(seconds=31)
        assert (await nightly.get(POOLS)).status_code == 200
        assert (await listed(api.client))["nightly"]["last_used_at"] != first_use
        api.clock.advance(hours=1)
        expired = await nightly.get(POOLS)
    assert expired.status_code == 401
    assert expired.json()["error"] == (
        f"admin token nightly expired at {until.isoformat(timespec='seconds')}"
    )
    assert (await listed(api.client))["nightly"]["status"] == "expired"


async def test_a_revoked_token_is_told_so_and_stays_listed(api: Api) -> None:
    value = await new_admin_token(api.client, "leaked")
    revoked = await api.client.delete(f"{ADMIN_TOKENS}/leaked")
    assert revoked.status_code == 200, revoked.text
    assert revoked.json()["status"] == "revoked"
    async with as_token(api, value) as leaked:
        refused = await leaked.get(POOLS)
    assert refused.status_code == 401
    assert refused.json()["error"].startswith("admin token leaked was revoked at ")
    assert (await listed(api.client))["leaked"]["status"] == "revoked"
    assert (await api.client.delete(f"{ADMIN_TOKENS}/nobody")).status_code == 404
    configured = await api.client.delete(f"{ADMIN_TOKENS}/configured")
    assert configured.status_code == 409
    assert "SLOTPOOL_ADMIN_TOKEN" in configured.json()["error"]


@asynccontextmanager
async def server_without_configured_token(
    database_url: str,
) -> AsyncIterator[tuple[httpx.AsyncClient, str]]:
    """A server whose only admin token is the one generated on first start."""
    upgrade(database_url)
    settings: Settings = settings_for(database_url, admin_token=None)
    shown: list[str] = []
    app = create_app(settings, clock=Clock(), on_admin_token=shown.append)
    async with asgi_client(app, token="") as client:
        (first,) = shown
        client.headers["Authorization"] = f"Bearer {first}"
        yield client, first


async def test_the_last_token_that_works_cannot_be_revoked(database_url: str) -> None:
    async with server_without_configured_token(database_url) as (initial, _):
        assert list(await listed(initial)) == ["initial"]
        alone = await initial.delete(f"{ADMIN_TOKENS}/initial")
        assert alone.status_code == 409
        assert "the last one that works" in alone.json()["error"]
        assert "slotpool admin-tokens create" in alone.json()["error"]
        second = await new_admin_token(initial, "second")
        assert (await initial.delete(f"{ADMIN_TOKENS}/initial")).status_code == 200
        assert (await initial.get(POOLS)).status_code == 401
        initial.headers["Authorization"] = f"Bearer {second}"
        assert (await initial.delete(f"{ADMIN_TOKENS}/second")).status_code == 409
        tokens = await listed(initial)
    assert {n: t["status"] for n, t in tokens.items()} == {
        "initial": "revoked",
        "second": "active",
    }


async def test_a_configured_token_leaves_the_others_revocable(database_url: str) -> None:
    upgrade(database_url)
    settings = settings_for(database_url, admin_token=SecretStr("configured-0123456789abcdef"))
    app = create_app(settings, clock=Clock())
    async with asgi_client(app, "configured-0123456789abcdef") as client:
        value = await new_admin_token(client, "only-stored")
        client.headers["Authorization"] = f"Bearer {value}"
        revoked = await client.delete(f"{ADMIN_TOKENS}/only-stored")
        assert revoked.status_code == 200, "the configured token still works"


async def test_two_tokens_revoking_each_other_at_once_leave_one(database_url: str) -> None:
    """Each sees the other's token as the one left; locking the working tokens' rows makes the
    second revocation wait for the first and count again. The loser is refused either as the
    last token that works (409) or, if the winner's revocation committed before the loser's
    request was authenticated, as a revoked token (401); one token always survives."""
    async with server_without_configured_token(database_url) as (initial, _):
        second = await new_admin_token(initial, "second")
        async with as_client(initial, second) as other:
            answers = await asyncio.gather(
                initial.delete(f"{ADMIN_TOKENS}/second"),
                other.delete(f"{ADMIN_TOKENS}/initial"),
            )
            codes = sorted(a.status_code for a in answers)
            assert codes in ([200, 401], [200, 409]), [a.text for a in answers]
            survivor = initial if answers[0].status_code == 200 else other
            working = [n for n, t in (await listed(survivor)).items() if t["status"] == "active"]
    assert len(working) == 1


def as_client(client: httpx.AsyncClient, token: str) -> httpx.AsyncClient:
    """Another client of the same app, as ``token``."""
    return httpx.AsyncClient(
        transport=client._transport,
        base_url=client.base_url,
        headers={"Authorization": f"Bearer {token}"},
    )
