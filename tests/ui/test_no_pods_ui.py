"""A k8s pool on this server, which has no Kubernetes cluster configured: the pool page says
why it gets no Pods (and what to do) where it used to blame an active freeze window, and its
queued task says the same."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from playwright.sync_api import Page, expect

from tests.ui.conftest import Server, Shots

NO_CLUSTER = "no Kubernetes cluster is configured in this server: set SLOTPOOL_KUBECONFIG"


def window_covering_now() -> dict[str, object]:
    """A freeze window from an hour ago to two hours ahead (UTC)."""
    start, end = datetime.now(UTC) - timedelta(hours=1), datetime.now(UTC) + timedelta(hours=2)
    return {
        "from_time": start.strftime("%H:%M"),
        "to_time": end.strftime("%H:%M"),
        "weekdays": [start.isoweekday()],
        "timezone": "UTC",
    }


def test_a_k8s_pool_without_a_cluster_says_why_it_has_no_pods(
    signed_in: Page, server: Server, shot: Shots
) -> None:
    config = {"image": "ghcr.io/acme/agent:1.4", "freeze_schedules": [window_covering_now()]}
    body = {"name": "ui-no-cluster", "pool_type": "k8s", "k8s_config": config}
    with server.api() as client:
        created = client.post("/api/v1/agent-pools", json=body)
        assert created.status_code == 201, created.text
        pool_id = created.json()["pool_id"]
        task = client.post("/api/v1/tasks", json={"pool_id": pool_id, "command": "true"}).json()

    page = signed_in
    page.goto(f"/pools/{pool_id}/pods")
    notice = page.get_by_role("status", name="Why no Pods")
    expect(notice).to_contain_text(NO_CLUSTER)
    expect(notice).to_contain_text("SLOTPOOL_KUBERNETES_IN_CLUSTER=true")
    expect(page.get_by_text(re.compile(r"^frozen$")).first).to_be_visible()  # frozen, too
    panel = page.locator(".panel")
    expect(panel).to_contain_text(f"No Pods. None can be created: {NO_CLUSTER}")
    expect(panel).not_to_contain_text("A freeze window is active")
    expect(panel).not_to_contain_text("once the pool has a configuration")
    shot("no-cluster-reason")

    page.goto("/")
    row = page.get_by_role("row").filter(has_text="ui-no-cluster")
    expect(row.get_by_text("no Pods")).to_be_visible()

    page.goto(f"/tasks/{task['id']}")
    expect(page.locator("p.reason")).to_contain_text(
        f"waiting: no Pod can be created: {NO_CLUSTER}"
    )
    shot("queued-task-reason")
