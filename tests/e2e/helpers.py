"""Waiting on a live slotpool server over its REST API, shared by the end-to-end tests."""

from __future__ import annotations

import time
from typing import Any

import httpx

TASKS = "/api/v1/tasks"


def wait_for(check: Any, *, what: str, seconds: float = 60, detail: Any | None = None) -> None:
    """Poll ``check`` until true; on a timeout, ``detail()`` (if given) says what was seen."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    seen = f": {detail()}" if detail is not None else ""
    raise AssertionError(f"timed out waiting for {what}{seen}")


def task(client: httpx.Client, task_id: str) -> dict[str, Any]:
    found: dict[str, Any] = client.get(f"{TASKS}/{task_id}").json()
    return found


def until_final(client: httpx.Client, task_id: str, seconds: float = 60) -> dict[str, Any]:
    final = {"succeeded", "failed", "cancelled", "timed_out", "lost", "expired"}
    wait_for(lambda: task(client, task_id)["status"] in final, what=task_id, seconds=seconds)
    return task(client, task_id)


def submit(client: httpx.Client, pool_id: str, **body: Any) -> str:
    response = client.post(TASKS, json={"pool_id": pool_id, **body})
    assert response.status_code == 201, response.text
    task_id: str = response.json()["id"]
    return task_id
