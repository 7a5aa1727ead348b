"""Pools over HTTP on SQLite and PostgreSQL: the seed's payloads, validation, auth, CRUD."""

from __future__ import annotations

import copy
import re
from typing import Any

import httpx
import pytest
from sqlalchemy import create_engine, event, text
from sqlalchemy.engine import Engine

from slotpool.store.db import backend, sync_url
from tests.api.conftest import Api

POOLS = "/api/v1/agent-pools"
SEED_WRONG = {
    "image": "hashicorp/terraform:1.6",
    "image_pull_policy": "IfNotPresent",
    "cpu_limit": "500m",
    "memory_limit": "512Mi",
    "env": {"TF_LOG": "INFO"},
    "min_replicas": 1,
    "max_replicas": 3,
}
SEED_RIGHT: dict[str, Any] = {
    "image": "hashicorp/terraform:1.6",
    "image_pull_policy": "IfNotPresent",
    "env": {"TF_LOG": "INFO"},
    "resources": {"limits": {"cpu": "500m", "memory": "512Mi"}},
    "min_replicas": 1,
    "max_replicas": 3,
    "freeze_schedules": [
        {
            "from_time": "23:00",
            "to_time": "02:00",
            "weekdays": [5],
            "timezone": "Europe/Berlin",
            "policy": "scale_to_zero",
            "note": "weekend",
        }
    ],
}


async def create_pool(api: Api, name: str = "terraform", **body: Any) -> dict[str, Any]:
    response = await api.client.post(POOLS, json={"name": name, "pool_type": "k8s", **body})
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


def stored_config(api: Api, pool_id: str) -> tuple[Any, Any]:
    """The seed's verification query, in each database's own JSON dialect."""
    if backend(api.database_url) == "sqlite":
        query = "SELECT json_extract(k8s_config, '$.resources.limits.cpu'), revision"
    else:
        query = "SELECT k8s_config->'resources'->'limits'->>'cpu', revision"
    engine = create_engine(sync_url(api.database_url))
    try:
        with engine.connect() as connection:
            row = connection.execute(
                text(f"{query} FROM agent_pools WHERE pool_id = :id"), {"id": pool_id}
            ).one()
    finally:
        engine.dispose()
    return row[0], row[1]


async def test_seed_wrong_payload_is_refused_and_nothing_is_stored(api: Api) -> None:
    pool = await create_pool(api)
    response = await api.client.put(f"{POOLS}/{pool['pool_id']}/k8s-config", json=SEED_WRONG)
    assert response.status_code == 422
    body = response.json()
    assert "nothing was saved" in body["error"]
    hints = {d["field"]: d.get("hint", "") for d in body["details"]}
    assert set(hints) == {"cpu_limit", "memory_limit"}
    assert "resources.limits.cpu" in hints["cpu_limit"]
    assert "resources.limits.memory" in hints["memory_limit"]
    assert stored_config(api, pool["pool_id"]) == (None, 1)
    read = await api.client.get(f"{POOLS}/{pool['pool_id']}/k8s-config")
    assert read.status_code == 200
    assert read.json() is None


async def test_seed_right_payload_is_stored_and_read_back_unchanged(api: Api) -> None:
    pool = await create_pool(api)
    path = f"{POOLS}/{pool['pool_id']}/k8s-config"
    response = await api.client.put(path, json=SEED_RIGHT)
    assert response.status_code == 200, response.text
    assert response.json()["message"] == "K8s configuration updated successfully"
    read = (await api.client.get(path)).json()
    # The server gives each freeze window an id (the windows are addressable one at a time);
    # apart from that, every key comes back exactly as sent.
    (window,) = read["freeze_schedules"]
    assert window.pop("id").startswith("fs-")
    assert read == SEED_RIGHT
    assert stored_config(api, pool["pool_id"]) == ("500m", 2)
    full = (await api.client.get(f"{POOLS}/{pool['pool_id']}")).json()
    assert full["k8s_config"]["resources"]["limits"] == {"cpu": "500m", "memory": "512Mi"}
    assert full["config_hash"] == response.json()["config_hash"]


async def test_config_save_keeps_windows_unless_the_payload_names_them(api: Api) -> None:
    pool = await create_pool(api)
    path = f"{POOLS}/{pool['pool_id']}/k8s-config"
    await api.client.put(path, json=SEED_RIGHT)
    without = {k: v for k, v in SEED_RIGHT.items() if k != "freeze_schedules"}
    await api.client.put(path, json={**without, "image": "hashicorp/terraform:1.7"})
    read = (await api.client.get(path)).json()
    assert read["image"] == "hashicorp/terraform:1.7"
    assert len(read["freeze_schedules"]) == 1
    await api.client.put(path, json={**without, "freeze_schedules": []})
    assert "freeze_schedules" not in (await api.client.get(path)).json()


async def test_resending_the_same_windows_without_ids_keeps_their_ids(api: Api) -> None:
    pool = await create_pool(api)
    path = f"{POOLS}/{pool['pool_id']}/k8s-config"
    two = {**SEED_RIGHT, "freeze_schedules": [*SEED_RIGHT["freeze_schedules"], FRIDAY_NOON]}
    await api.client.put(path, json=two)
    ids = [w["id"] for w in (await api.client.get(path)).json()["freeze_schedules"]]
    await api.client.put(path, json=two)
    assert [w["id"] for w in (await api.client.get(path)).json()["freeze_schedules"]] == ids
    changed = {**two, "freeze_schedules": [SEED_RIGHT["freeze_schedules"][0], SATURDAY_NOON]}
    await api.client.put(path, json=changed)
    after = [w["id"] for w in (await api.client.get(path)).json()["freeze_schedules"]]
    assert after[0] == ids[0]
    assert after[1] not in ids


FRIDAY_NOON = {"from_time": "12:00", "to_time": "13:00", "weekdays": [5]}
SATURDAY_NOON = {"from_time": "12:00", "to_time": "13:00", "weekdays": [6]}


async def test_resent_window_ids_are_kept(api: Api) -> None:
    pool = await create_pool(api)
    path = f"{POOLS}/{pool['pool_id']}/k8s-config"
    await api.client.put(path, json=SEED_RIGHT)
    first = (await api.client.get(path)).json()
    await api.client.put(path, json=first)
    assert (await api.client.get(path)).json() == first


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "Bad Name"}, "name"),
        ({"name": "ok", "pool_type": "vm"}, "pool_type"),
        ({"name": "ok", "colour": "red"}, "colour"),
        ({"name": "ok", "k8s_config": {"cpu_limit": "1", "image": "x"}}, "k8s_config.cpu_limit"),
        ({"name": "ok", "k8s_config": {"min_replicas": 2}}, "image"),
    ],
)
async def test_create_refuses_bad_input_with_the_field(
    api: Api, body: dict[str, Any], field: str
) -> None:
    response = await api.client.post(POOLS, json=body)
    assert response.status_code == 422, response.text
    assert field in {d["field"] for d in response.json()["details"]}
    assert (await api.client.get(POOLS)).json()["total"] == 0


async def test_create_with_config_and_duplicate_name(api: Api) -> None:
    pool = await create_pool(api, k8s_config=SEED_RIGHT)
    assert re.fullmatch(r"pool-[a-z0-9]{16}", pool["pool_id"])
    assert pool["k8s_config"]["resources"]["limits"]["cpu"] == "500m"
    assert pool["created_by"] == "configured"
    again = await api.client.post(POOLS, json={"name": "terraform"})
    assert again.status_code == 409
    assert "already exists" in again.json()["error"]


async def test_list_get_patch_delete(api: Api) -> None:
    a = await create_pool(api, "alpha", description="first")
    await create_pool(api, "beta", pool_type="local")
    listing = (await api.client.get(POOLS)).json()
    assert [p["name"] for p in listing["items"]] == ["alpha", "beta"]
    assert listing["total"] == 2
    assert (await api.client.get(POOLS, params={"name": "beta"})).json()["total"] == 1
    path = f"{POOLS}/{a['pool_id']}"
    renamed = await api.client.patch(path, json={"name": "gamma", "description": "renamed"})
    assert renamed.status_code == 200
    assert (renamed.json()["name"], renamed.json()["revision"]) == ("gamma", 2)
    clash = await api.client.patch(path, json={"name": "beta"})
    assert clash.status_code == 409
    assert (await api.client.delete(path)).status_code == 204
    assert (await api.client.get(path)).status_code == 404
    assert (await api.client.delete(path)).status_code == 404


async def test_patch_refuses_nulls_instead_of_dropping_them(api: Api) -> None:
    pool = await create_pool(api, description="kept")
    response = await api.client.patch(f"{POOLS}/{pool['pool_id']}", json={"description": None})
    assert response.status_code == 422
    assert response.json()["details"][0]["field"] == "description"
    assert (await api.client.get(f"{POOLS}/{pool['pool_id']}")).json()["description"] == "kept"


@pytest.mark.parametrize(
    ("method", "path", "body", "field"),
    [
        ("POST", "", {"name": "nul", "description": "a\x00b"}, "description"),
        ("PUT", "/k8s-config", {"image": "busybox", "env": {"A": "\x00"}}, "env.A"),
        ("PUT", "/k8s-config", {"image": "busybox", "command": ["x\x00"]}, "command.0"),
        (
            "POST",
            "/freeze-schedules",
            {"from_time": "01:00", "to_time": "02:00", "weekdays": [1], "note": "\x00"},
            "note",
        ),
    ],
)
async def test_nul_characters_are_refused_on_both_databases(
    api: Api, method: str, path: str, body: dict[str, Any], field: str
) -> None:
    # PostgreSQL cannot store NUL; found by the contract run as a 500 on PostgreSQL only.
    pool = await create_pool(api)
    base = POOLS if path == "" else f"{POOLS}/{pool['pool_id']}{path}"
    response = await api.client.request(method, base, json=body)
    assert response.status_code == 422, response.text
    assert field in [d["field"] for d in response.json()["details"]]
    assert (await api.client.get(POOLS, params={"name": "a\x00"})).status_code == 422


async def test_pool_type_cannot_be_patched(api: Api) -> None:
    pool = await create_pool(api)
    response = await api.client.patch(f"{POOLS}/{pool['pool_id']}", json={"pool_type": "local"})
    assert response.status_code == 422
    assert response.json()["details"][0]["field"] == "pool_type"


async def test_if_match_protects_against_lost_updates(api: Api) -> None:
    pool = await create_pool(api)
    path = f"{POOLS}/{pool['pool_id']}"
    read = await api.client.get(path)
    assert read.headers["ETag"] == '"1"'
    ok = await api.client.patch(path, json={"description": "x"}, headers={"If-Match": '"1"'})
    assert ok.status_code == 200
    stale = await api.client.put(f"{path}/k8s-config", json=SEED_RIGHT, headers={"If-Match": '"1"'})
    assert stale.status_code == 412
    assert stored_config(api, pool["pool_id"]) == (None, 2)


async def test_unknown_and_malformed_pool_ids(api: Api) -> None:
    missing = await api.client.get(f"{POOLS}/pool-0000000000000000")
    assert missing.status_code == 404
    assert missing.json() == {
        "error": "agent pool pool-0000000000000000 not found",
        "details": [],
    }
    malformed = await api.client.get(f"{POOLS}/not-a-pool")
    assert malformed.status_code == 422
    assert malformed.json()["details"][0]["field"] == "path.pool_id"


@pytest.mark.parametrize("header", [None, "Bearer wrong", "Basic abc"])
async def test_admin_token_is_required(api: Api, header: str | None) -> None:
    headers = {"Authorization": header} if header else {}
    async with httpx.AsyncClient(
        transport=api.client._transport, base_url="http://slotpool.test", headers=headers
    ) as anonymous:
        response = await anonymous.get(POOLS)
        assert response.status_code == 401
        assert response.headers["WWW-Authenticate"] == "Bearer"
        assert "error" in response.json()
        assert (await anonymous.get("/healthz")).status_code == 200
        assert (await anonymous.get("/readyz")).json() == {"status": "ok"}


async def test_openapi_is_served(api: Api) -> None:
    spec = (await api.client.get("/openapi.json")).json()
    assert "/api/v1/agent-pools/{pool_id}/k8s-config" in spec["paths"]
    assert "PoolConfig" in spec["components"]["schemas"]


async def test_list_pages(api: Api) -> None:
    for i in range(5):
        await create_pool(api, f"p{i}")
    page = (await api.client.get(POOLS, params={"limit": 2, "offset": 3})).json()
    assert [p["name"] for p in page["items"]] == ["p3", "p4"]
    assert page["total"] == 5
    too_many = await api.client.get(POOLS, params={"limit": 5000})
    assert too_many.status_code == 422
    assert too_many.json()["details"][0]["field"] == "query.limit"


def test_seed_payloads_are_not_mutated() -> None:
    # Guards the tests above: they compare against these constants.
    assert copy.deepcopy(SEED_RIGHT) == SEED_RIGHT


async def test_a_config_save_reads_the_pool_once(api: Api) -> None:
    """Counted, not timed: a save used to re-read the pool four times in one transaction."""
    pool = await create_pool(api, k8s_config=SEED_RIGHT)
    statements: list[str] = []

    def record(*args: Any) -> None:
        # Only the pool's tables: the server's once-a-second sweeper may query others meanwhile.
        sql = str(args[2])
        if "agent_pools" in sql or "freeze_schedules" in sql:
            statements.append(sql.split()[0])

    event.listen(Engine, "before_cursor_execute", record)
    try:
        response = await api.client.put(
            f"{POOLS}/{pool['pool_id']}/k8s-config", json={**SEED_RIGHT, "image": "busybox:2"}
        )
    finally:
        event.remove(Engine, "before_cursor_execute", record)
    assert response.status_code == 200
    # The pool, its windows, the update; the unchanged window is neither deleted nor re-inserted.
    assert statements == ["SELECT", "SELECT", "UPDATE"]
