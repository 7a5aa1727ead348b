"""The invariants every end-to-end run must keep, checked from what the server reports.

* No slot was given twice: the tasks on one (Pod, slot) never overlap in time (a task holds its
  slot from its start to its end, approval waits included).
* No Pod with a busy or reserved slot was deleted by slotpool: for every deletion the controller
  recorded (``delete_pod``, ``rebuild_pod``, ``delete_stuck_pod`` events, done), no task held a
  slot of that Pod at that moment.
* Every task ended in a final state, and every one that did not succeed says why.
* The slot accounting equals what runs: a busy or reserved slot in ``/pods`` is held by exactly
  the task that says it runs (or waits for approval) there, and every such task has its slot.

``violations(client, pool_id)`` returns what it found, as sentences; an empty list is a pass.
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from datetime import UTC, datetime
from typing import Any

import httpx

FINAL = {"succeeded", "failed", "cancelled", "timed_out", "lost", "expired"}
DELETIONS = {"delete_pod", "rebuild_pod", "delete_stuck_pod"}


def _all(client: httpx.Client, path: str, **params: Any) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    while True:
        page = client.get(path, params={**params, "limit": 500, "offset": len(items)}).json()
        items += page["items"]
        if not page["items"] or len(items) >= page["total"]:
            return items


def _events(client: httpx.Client, pool_id: str) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    before: int | None = None
    while True:
        params: dict[str, Any] = {"limit": 500}
        if before is not None:
            params["before"] = before
        page = client.get(f"/api/v1/agent-pools/{pool_id}/events", params=params).json()
        events += page["items"]
        if len(page["items"]) < 500:
            return events
        before = page["items"][-1]["id"]


def _time(value: str | None) -> datetime:
    return datetime.fromisoformat(value) if value else datetime.max.replace(tzinfo=UTC)


def violations(
    client: httpx.Client,
    pool_id: str,
    *,
    settled: bool = True,
    may_end: frozenset[str] = frozenset(),
) -> list[str]:
    """``settled``: every task should have ended (else it is reported). ``may_end``: ids of
    tasks allowed to end without succeeding (their reason is still required)."""
    found: list[str] = []
    tasks = _all(client, "/api/v1/tasks", pool_id=pool_id)
    held: dict[tuple[str, int], list[dict[str, Any]]] = defaultdict(list)
    for task in tasks:
        if task["pod_name"] is not None and task["started_at"] is not None:
            held[(task["pod_name"], task["slot_index"])].append(task)
        if task["status"] not in FINAL:
            if settled:
                found.append(f"task {task['id']} did not end: {task['status']}")
            continue
        if task["status"] != "succeeded":
            if not task["reason"]:
                found.append(f"task {task['id']} ended {task['status']} without a reason")
            if task["id"] not in may_end:
                found.append(f"task {task['id']} ended {task['status']}: {task['reason']}")

    for (pod, slot), on_slot in held.items():
        on_slot.sort(key=lambda t: t["started_at"])
        for first, second in itertools.pairwise(on_slot):
            if _time(second["started_at"]) < _time(first["finished_at"]):
                found.append(f"slot {pod}/{slot} given twice: {first['id']} and {second['id']}")

    for event in _events(client, pool_id):
        if event["action"] not in DELETIONS or event["outcome"] != "done":
            continue
        at = _time(event["at"])
        for (pod, slot), on_slot in held.items():
            if pod != event["pod"]:
                continue
            for task in on_slot:
                if _time(task["started_at"]) <= at < _time(task["finished_at"]):
                    found.append(
                        f"{event['action']} deleted {pod} at {event['at']} while task "
                        f"{task['id']} held slot {slot}"
                    )

    if settled:
        found += _accounting(client, pool_id, tasks)
    return found


def _accounting(client: httpx.Client, pool_id: str, tasks: list[dict[str, Any]]) -> list[str]:
    found: list[str] = []
    pods = client.get(f"/api/v1/agent-pools/{pool_id}/pods").json()["items"]
    slots = {
        (pod["name"], slot["index"]): slot
        for pod in pods
        if pod["state"] != "failed"
        for slot in pod["slots"]
    }
    holding = {
        (t["pod_name"], t["slot_index"]): t
        for t in tasks
        if t["status"] in ("running", "awaiting_approval") and t["pod_name"] is not None
    }
    for key, slot in slots.items():
        task = holding.get(key)
        if slot["state"] == "idle" and task is not None:
            found.append(f"slot {key} is idle but task {task['id']} says it is there")
        if slot["state"] != "idle" and (task is None or slot["task_id"] != task["id"]):
            found.append(f"slot {key} is {slot['state']} for {slot['task_id']}, no such task")
    return found
