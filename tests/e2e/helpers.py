"""Waiting on a live slotpool server over its REST API, shared by the end-to-end tests."""

from __future__ import annotations

import time
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

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


Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(client: httpx.Client) -> Samples:
    response = client.get("/metrics", headers={"Authorization": ""}, follow_redirects=False)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    """The sample with exactly these labels (it must be exported)."""
    found = samples.get((name, frozenset(labels.items())))
    assert found is not None, f"no sample {name}{labels}"
    return found


def total(samples: Samples, name: str, **labels: str) -> float:
    """The sum of the samples that have these labels (among others)."""
    wanted = set(labels.items())
    return sum(v for (n, seen), v in samples.items() if n == name and wanted <= seen)
