"""The config hash the API shows is read from the pool's stored Pod fields; after every kind of
change it is the hash of the Pod the saved configuration makes now (the preview computes that one
from the whole configuration), on both databases. The listing is serialised once, by the same
schema: validating it again gives the same bytes."""

from __future__ import annotations

from typing import Any

from pydantic import TypeAdapter

from slotpool.api.app import create_app
from slotpool.api.schemas import PoolList
from slotpool.store.uow import Store
from tests.api.conftest import ADMIN_TOKEN, Api, settings_for
from tests.api.test_pools_api import POOLS, SEED_RIGHT, create_pool
from tests.support.clock import Clock
from tests.support.server import asgi_client

POOL_LIST = TypeAdapter(PoolList)


async def shown_hashes(api: Api, pool_id: str) -> set[str]:
    """The hash as the pool, the pool list and the Pod preview each give it."""
    got = (await api.client.get(f"{POOLS}/{pool_id}")).json()
    listed = (await api.client.get(POOLS, params={"limit": 1000})).json()["items"]
    (item,) = [p for p in listed if p["pool_id"] == pool_id]
    preview = await api.client.get(f"{POOLS}/{pool_id}/pod-preview")
    assert preview.status_code == 200, preview.text
    return {got["config_hash"], item["config_hash"], preview.headers["X-Slotpool-Config-Hash"]}


async def put_config(api: Api, pool_id: str, config: dict[str, Any]) -> str:
    response = await api.client.put(f"{POOLS}/{pool_id}/k8s-config", json=config)
    assert response.status_code == 200, response.text
    shown: str = response.json()["config_hash"]
    return shown


async def test_the_stored_hash_follows_every_change(api: Api) -> None:
    pool = await create_pool(api, k8s_config=SEED_RIGHT)
    pool_id = pool["pool_id"]
    assert await shown_hashes(api, pool_id) == {pool["config_hash"]}

    saved = await put_config(api, pool_id, {**SEED_RIGHT, "image": "hashicorp/terraform:1.7"})
    assert saved != pool["config_hash"]
    assert await shown_hashes(api, pool_id) == {saved}

    # What the CLI's apply sends for a changed document: the configuration, then the rest.
    applied = await put_config(api, pool_id, {**SEED_RIGHT, "namespace": "team-a"})
    patched = await api.client.patch(f"{POOLS}/{pool_id}", json={"description": "moved"})
    assert patched.status_code == 200, patched.text
    assert await shown_hashes(api, pool_id) == {applied}

    # Edits that shape no Pod leave the hash as it is.
    window = {"from_time": "01:00", "to_time": "02:00", "weekdays": [1]}
    added = await api.client.post(f"{POOLS}/{pool_id}/freeze-schedules", json=window)
    assert added.status_code == 201, added.text
    renamed = await api.client.patch(f"{POOLS}/{pool_id}", json={"name": "renamed"})
    assert renamed.status_code == 200, renamed.text
    assert await shown_hashes(api, pool_id) == {applied}


async def test_a_local_pool_without_configuration_hashes_the_defaults(api: Api) -> None:
    pool = await create_pool(api, name="here", pool_type="local")
    assert pool["k8s_config"] is None
    assert await shown_hashes(api, pool["pool_id"]) == {pool["config_hash"]}
    saved = await put_config(api, pool["pool_id"], {"slots_per_pod": 2})
    assert saved != pool["config_hash"]
    assert await shown_hashes(api, pool["pool_id"]) == {saved}


async def test_a_token_rotation_moves_the_hash(api: Api) -> None:
    pool = await create_pool(api, k8s_config=SEED_RIGHT)
    store = Store(api.database_url)
    try:
        async with store.unit_of_work() as uow:
            await uow.pools.set_token_state(pool["pool_id"], token_generation=2)
    finally:
        await store.close()
    (rotated,) = await shown_hashes(api, pool["pool_id"])
    assert rotated != pool["config_hash"]


async def test_settings_that_enter_the_pod_move_the_hash(api: Api) -> None:
    pool = await create_pool(api, k8s_config={"image": "busybox"})
    bare = await create_pool(api, name="bare", k8s_config={"image": "busybox", "namespace": "x"})
    before = {p["pool_id"]: p["config_hash"] for p in (pool, bare)}
    for changed in ({"public_url": "https://elsewhere.test"}, {"default_namespace": "agents"}):
        settings = settings_for(api.database_url, **changed)
        async with asgi_client(create_app(settings, clock=Clock()), ADMIN_TOKEN) as client:
            other = Api(client, settings, api.clock, api.database_url)
            (moved,) = await shown_hashes(other, pool["pool_id"])
            assert moved != before[pool["pool_id"]]
            (kept_or_moved,) = await shown_hashes(other, bare["pool_id"])
            # The pool that names its namespace does not depend on the default one.
            assert (kept_or_moved == before[bare["pool_id"]]) == ("default_namespace" in changed)


async def test_the_listing_is_what_its_schema_makes_of_it(api: Api) -> None:
    await create_pool(api, k8s_config=SEED_RIGHT)
    rich = {
        "image": "ghcr.io/acme/agent:1.4",
        "image_pull_policy": "Always",
        "command": ["/bin/agent"],
        "env": {"Z_LAST": "1", "A_FIRST": "ünï"},
        "resources": {"limits": {"memory": "1Gi", "cpu": 2}, "requests": {"cpu": "250m"}},
        "tolerations": [{"operator": "Exists", "effect": "NoExecute", "toleration_seconds": 30}],
        "labels": {"team": "a"},
        "freeze_schedules": [{"from_time": "11:00", "to_time": "13:00", "weekdays": [5]}],
    }
    await create_pool(api, name="rich", k8s_config=rich)
    await create_pool(api, name="here", pool_type="local")
    await create_pool(api, name="by-hand", pool_type="static")
    response = await api.client.get(POOLS, params={"limit": 1000})
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert POOL_LIST.dump_json(PoolList.model_validate_json(response.content)) == response.content
    for item in response.json()["items"]:
        got = await api.client.get(f"{POOLS}/{item['pool_id']}")
        assert list(got.json().items()) == list(item.items())
