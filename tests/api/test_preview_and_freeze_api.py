"""The Pod preview (saved and candidate) and freeze windows over HTTP, on both databases."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import yaml

from tests.api.conftest import Api
from tests.api.test_pools_api import POOLS, SEED_RIGHT, create_pool


async def preview(api: Api, pool_id: str, **params: str) -> Any:
    response = await api.client.get(f"{POOLS}/{pool_id}/pod-preview", params=params)
    assert response.status_code == 200, response.text
    return response


async def test_preview_is_the_exact_pod_of_the_saved_config(api: Api) -> None:
    pool = await create_pool(api, k8s_config=SEED_RIGHT)
    response = await preview(api, pool["pool_id"])
    assert response.headers["content-type"].startswith("application/yaml")
    pod = yaml.safe_load(response.text)
    assert pod["kind"] == "Pod"
    assert pod["spec"]["restartPolicy"] == "Never"
    assert pod["metadata"]["generateName"] == f"slotpool-{pool['pool_id']}-"
    assert pod["metadata"]["labels"]["slotpool.io/pool-id"] == pool["pool_id"]
    assert pod["metadata"]["annotations"]["slotpool.io/config-hash"] == pool["config_hash"]
    assert response.headers["X-Slotpool-Config-Hash"] == pool["config_hash"]
    (container,) = pod["spec"]["containers"]
    assert container["image"] == "hashicorp/terraform:1.6"
    assert container["imagePullPolicy"] == "IfNotPresent"
    assert container["resources"] == {"limits": {"cpu": "500m", "memory": "512Mi"}}
    token = next(e for e in container["env"] if e["name"] == "SLOTPOOL_AGENT_TOKEN")
    assert token == {
        "name": "SLOTPOOL_AGENT_TOKEN",
        "valueFrom": {
            "secretKeyRef": {"name": f"slotpool-agent-token-{pool['pool_id']}", "key": "token"}
        },
    }
    assert "Deployment" not in response.text
    as_json = (await preview(api, pool["pool_id"], format="json")).json()
    assert as_json == pod


async def test_preview_of_a_candidate_saves_nothing(api: Api) -> None:
    pool = await create_pool(api, k8s_config=SEED_RIGHT)
    path = f"{POOLS}/{pool['pool_id']}"
    candidate = {**SEED_RIGHT, "image": "hashicorp/terraform:1.7"}
    response = await api.client.post(f"{path}/pod-preview", json=candidate)
    assert response.status_code == 200, response.text
    pod = yaml.safe_load(response.text)
    assert pod["spec"]["containers"][0]["image"] == "hashicorp/terraform:1.7"
    assert pod["metadata"]["annotations"]["slotpool.io/config-hash"] != pool["config_hash"]
    after = (await api.client.get(path)).json()
    assert after["revision"] == pool["revision"]
    assert after["k8s_config"]["image"] == "hashicorp/terraform:1.6"
    refused = await api.client.post(f"{path}/pod-preview", json={"cpu_limit": "1"})
    assert refused.status_code == 422
    assert refused.json()["details"][0]["hint"] == "it belongs at resources.limits.cpu"


async def test_saving_a_change_changes_the_preview_and_hash(api: Api) -> None:
    pool = await create_pool(api, k8s_config=SEED_RIGHT)
    before = yaml.safe_load((await preview(api, pool["pool_id"])).text)
    again = yaml.safe_load((await preview(api, pool["pool_id"])).text)
    assert before == again
    changed = {**SEED_RIGHT, "resources": {"limits": {"cpu": "1", "memory": "512Mi"}}}
    saved = await api.client.put(f"{POOLS}/{pool['pool_id']}/k8s-config", json=changed)
    after = yaml.safe_load((await preview(api, pool["pool_id"])).text)
    assert after["spec"]["containers"][0]["resources"]["limits"]["cpu"] == "1"
    new_hash = after["metadata"]["annotations"]["slotpool.io/config-hash"]
    assert new_hash == saved.json()["config_hash"] != pool["config_hash"]


async def test_preview_without_a_config_or_for_a_static_pool(api: Api) -> None:
    bare = await create_pool(api, "bare")
    response = await api.client.get(f"{POOLS}/{bare['pool_id']}/pod-preview")
    assert response.status_code == 409
    assert "no configuration yet" in response.json()["error"]
    local = await create_pool(api, "local", pool_type="local")
    assert local["config_hash"] is not None
    pod = yaml.safe_load((await preview(api, local["pool_id"])).text)
    assert pod["metadata"]["annotations"]["slotpool.io/slots"] == "4"
    static = await create_pool(api, "static", pool_type="static")
    response = await api.client.get(f"{POOLS}/{static['pool_id']}/pod-preview")
    assert response.status_code == 409
    assert "static pool" in response.json()["error"]


FRIDAY_NIGHT = {"from_time": "23:00", "to_time": "02:00", "weekdays": [5], "timezone": "UTC"}


async def test_freeze_windows_one_at_a_time(api: Api) -> None:
    pool = await create_pool(api)
    base = f"{POOLS}/{pool['pool_id']}/freeze-schedules"
    created = await api.client.post(base, json=FRIDAY_NIGHT)
    assert created.status_code == 201, created.text
    window = created.json()
    assert window["id"].startswith("fs-")
    assert window["policy"] == "scale_to_zero"
    listing = (await api.client.get(base)).json()
    assert [w["id"] for w in listing["items"]] == [window["id"]]
    assert listing["freeze"]["active"] is False
    changed = await api.client.put(
        f"{base}/{window['id']}", json={**FRIDAY_NIGHT, "policy": "no_new_tasks"}
    )
    assert changed.status_code == 200
    assert (await api.client.get(f"{base}/{window['id']}")).json()["policy"] == "no_new_tasks"
    config = (await api.client.get(f"{POOLS}/{pool['pool_id']}/k8s-config")).json()
    assert config["freeze_schedules"][0]["id"] == window["id"]
    assert (await api.client.delete(f"{base}/{window['id']}")).status_code == 204
    assert (await api.client.get(f"{base}/{window['id']}")).status_code == 404
    assert (await api.client.delete(f"{base}/{window['id']}")).status_code == 404


async def test_a_window_without_length_is_refused(api: Api) -> None:
    pool = await create_pool(api)
    base = f"{POOLS}/{pool['pool_id']}/freeze-schedules"
    response = await api.client.post(base, json={**FRIDAY_NIGHT, "to_time": "23:00"})
    assert response.status_code == 422
    assert [d["field"] for d in response.json()["details"]] == ["to_time"]
    assert (await api.client.get(base)).json()["items"] == []
    bad = await api.client.post(base, json={**FRIDAY_NIGHT, "weekdays": [0, 8]})
    assert bad.status_code == 422
    (detail,) = bad.json()["details"]
    assert detail["field"] == "weekdays"
    assert "weekday 0 is not from 1 (Monday) to 7 (Sunday)" in detail["message"]


async def test_freeze_state_and_one_time_unfreeze(api: Api) -> None:
    pool = await create_pool(api)
    pool_path = f"{POOLS}/{pool['pool_id']}"
    await api.client.post(f"{pool_path}/freeze-schedules", json=FRIDAY_NIGHT)
    api.clock.now = datetime(2026, 11, 21, 1, 0, tzinfo=UTC)  # Saturday 01:00
    frozen = (await api.client.get(pool_path)).json()["freeze"]
    assert frozen["active"] is True
    assert frozen["until"].startswith("2026-11-21T02:00:00")
    lifted = await api.client.post(f"{pool_path}/one-time-unfreeze", json={"note": "hotfix"})
    assert lifted.status_code == 200, lifted.text
    assert lifted.json()["active"] is False
    assert lifted.json()["lifted_until"].startswith("2026-11-21T02:00:00")
    read = (await api.client.get(pool_path)).json()
    assert read["one_time_unfreeze"]["by"] == "configured"
    assert read["one_time_unfreeze"]["note"] == "hotfix"
    restored = await api.client.delete(f"{pool_path}/one-time-unfreeze")
    assert restored.json()["active"] is True
    assert (await api.client.get(pool_path)).json()["one_time_unfreeze"] is None


async def test_unfreeze_needs_an_active_window_or_a_time(api: Api) -> None:
    pool = await create_pool(api)
    path = f"{POOLS}/{pool['pool_id']}/one-time-unfreeze"
    api.clock.now = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)  # Friday noon: no window
    refused = await api.client.post(path)
    assert refused.status_code == 409
    ahead = await api.client.post(path, json={"until": "2026-11-21T03:00:00Z"})
    assert ahead.status_code == 200
    assert ahead.json()["lifted_until"].startswith("2026-11-21T03:00:00")
    past = await api.client.post(path, json={"until": "2026-11-19T03:00:00Z"})
    assert past.status_code == 422
    assert past.json()["details"] == [{"field": "until", "message": "must be in the future"}]
    naive = await api.client.post(path, json={"until": "2026-11-21T03:00:00"})
    assert naive.status_code == 422
    assert naive.json()["details"][0]["field"] == "until"
