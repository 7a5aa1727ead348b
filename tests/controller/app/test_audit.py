"""Every admin change over the API leaves one audit line: who, what, and the pool's revision
before and after where it moves; a refused change leaves none. The routes an admin changes
things through are read from the app itself: a new one without a case here fails the test."""

from __future__ import annotations

from collections.abc import MutableMapping
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from fastapi import FastAPI
from structlog.testing import capture_logs

from tests.controller.app.conftest import POOLS, TASKS, World

ADMIN_TOKENS = "/api/v1/admin-tokens"
POOL = f"{POOLS}/{{pool_id}}"
READ_ONLY = {("POST", f"{POOL}/pod-preview")}  # a candidate configuration is sent, not saved
WINDOW = {"from_time": "23:00", "to_time": "02:00", "weekdays": [5], "timezone": "UTC"}


def admin_changes(app: FastAPI) -> set[tuple[str, str]]:
    """(method, path) of every operation that takes the admin token and is not a read, as the
    app's OpenAPI document describes them."""
    return {
        (method.upper(), path)
        for path, operations in app.openapi()["paths"].items()
        for method, operation in operations.items()
        if method != "get" and {"HTTPBearer": []} in operation.get("security", [])
    } - READ_ONLY


class Audited:
    """Sends admin changes and keeps the audit line each one wrote."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client
        self.ids: dict[str, str] = {}
        self.routes: set[tuple[str, str]] = set()

    async def change(
        self, method: str, route: str, action: str, json: Any = None, **params: Any
    ) -> tuple[Any, MutableMapping[str, Any]]:
        """The answer's body and the one audit line of ``action`` the change wrote."""
        with capture_logs() as logs:
            response = await self.client.request(
                method, route.format(**self.ids), json=json, params=params or None
            )
        assert response.is_success, response.text
        lines = [line for line in logs if line["event"] == "admin change"]
        found = [line for line in lines if line["action"] == action]
        assert len(found) == 1, f"{method} {route}: {lines}"
        assert found[0]["who"] == "configured"  # SLOTPOOL_ADMIN_TOKEN's name
        for secret in _values(response):
            assert all(secret not in str(v) for line in lines for v in line.values())
        self.routes.add((method, route))
        return (response.json() if response.content else None), found[0]


def _values(response: httpx.Response) -> list[str]:
    """Token values an answer carries (shown once; never in a log line)."""
    body = response.json() if response.content else None
    return [body["token"]] if isinstance(body, dict) and body.get("token") else []


def revisions(line: MutableMapping[str, Any]) -> tuple[int | None, int | None]:
    return line["revision_before"], line["revision_after"]


async def test_every_admin_change_writes_one_audit_line(world: World) -> None:
    audited = Audited(world.client)
    change = audited.change
    config = {"image": "ghcr.io/acme/agent:1.4", "slots_per_pod": 1, "max_replicas": 2}

    pool, line = await change(
        "POST", POOLS, "pool.create", {"name": "audited", "pool_type": "k8s", "k8s_config": config}
    )
    audited.ids["pool_id"] = pool_id = pool["pool_id"]
    assert (line["pool_id"], line["pool_name"]) == (pool_id, "audited")
    assert revisions(line) == (None, 1)

    _, line = await change("PATCH", POOL, "pool.rename", {"name": "renamed"})
    assert (line["pool_name"], line["fields"], revisions(line)) == ("renamed", ["name"], (1, 2))
    _, line = await change("PATCH", POOL, "pool.edit", {"description": "d"})
    assert revisions(line) == (2, 3)
    with capture_logs() as logs:
        stale = await world.client.patch(
            POOL.format(pool_id=pool_id), json={"description": "x"}, headers={"If-Match": '"1"'}
        )
    assert stale.status_code == 412
    assert [line for line in logs if line["event"] == "admin change"] == []  # refused: no line
    _, line = await change(
        "PUT", f"{POOL}/k8s-config", "pool.config.save", {**config, "min_replicas": 1}
    )
    assert revisions(line) == (3, 4)
    _, line = await change("POST", f"{POOL}/sync-deployment", "pool.sync")
    assert line["pool_id"] == pool_id

    window, line = await change("POST", f"{POOL}/freeze-schedules", "freeze_window.add", WINDOW)
    audited.ids["schedule_id"] = window["id"]
    assert (line["window_id"], revisions(line)) == (window["id"], (4, 5))
    _, line = await change(
        "PUT",
        f"{POOL}/freeze-schedules/{{schedule_id}}",
        "freeze_window.replace",
        {**WINDOW, "note": "n"},
    )
    assert (line["window_id"], revisions(line)) == (window["id"], (5, 6))
    _, line = await change(
        "DELETE", f"{POOL}/freeze-schedules/{{schedule_id}}", "freeze_window.remove"
    )
    assert (line["window_id"], revisions(line)) == (window["id"], (6, 7))
    until = (world.clock() + timedelta(hours=2)).astimezone(UTC).isoformat()
    _, line = await change(
        "POST", f"{POOL}/one-time-unfreeze", "pool.unfreeze", {"until": until, "note": "hotfix"}
    )
    assert revisions(line) == (7, 8)
    assert datetime.fromisoformat(line["until"]) == datetime.fromisoformat(until)
    _, line = await change("DELETE", f"{POOL}/one-time-unfreeze", "pool.unfreeze.cancel")
    assert revisions(line) == (8, 9)

    _, line = await change("POST", f"{POOL}/tokens", "pool_token.create", {"name": "hand"})
    audited.ids["name"] = "hand"
    assert (line["pool_id"], line["token"]) == (pool_id, "hand")
    rotated, line = await change(
        "POST", f"{POOL}/tokens/{{name}}/rotate", "pool_token.rotate", {"overlap_seconds": 60}
    )
    assert (line["token"], line["successor"]) == ("hand", rotated["new"]["name"])
    _, line = await change("DELETE", f"{POOL}/tokens/{{name}}", "pool_token.revoke")
    assert line["token"] == "hand"

    _, line = await change("POST", ADMIN_TOKENS, "admin_token.create", {"name": "ops"})
    audited.ids["name"] = "ops"
    assert line["token"] == "ops"
    _, line = await change("DELETE", f"{ADMIN_TOKENS}/{{name}}", "admin_token.revoke")
    assert line["token"] == "ops"

    (pod,) = world.runtime.of(pool_id)
    agent = await world.agent(pool_id, pod)
    steps = [{"name": "plan", "run": "plan"}, {"name": "apply", "run": "apply"}]
    steps[1]["requires_approval"] = True  # type: ignore[assignment]
    gated, line = await change(
        "POST", TASKS, "task.submit", {"pool_id": pool_id, "steps": steps, "env": {"K": "v4lue"}}
    )
    assert (line["task_id"], line["pool_id"]) == (gated["id"], pool_id)
    assert "v4lue" not in str(line)  # a task's environment is never logged
    (plan,) = (await agent.claim([0]))["assignments"]
    await agent.result(plan["task_id"], 0, "succeeded")
    audited.ids["task_id"] = gated["id"]
    _, line = await change("POST", f"{TASKS}/{{task_id}}/approve", "task.approve")
    assert (line["task_id"], line["status"]) == (gated["id"], "awaiting_approval")
    _, line = await change("POST", f"{TASKS}/{{task_id}}/cancel", "task.cancel")
    assert (line["task_id"], line["status"]) == (gated["id"], "running")

    audited.ids["name"] = pod
    _, line = await change("DELETE", f"{POOL}/pods/{{name}}", "pod.drain")
    assert (line["pool_id"], line["pod"]) == (pool_id, pod)
    _, line = await change("DELETE", POOL, "pool.delete", force="true")
    assert (line["pool_name"], revisions(line)) == ("renamed", (9, None))

    assert audited.routes == admin_changes(world.app)
