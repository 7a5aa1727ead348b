"""The tasks page across pools (filters by pool, status and submitter, kept in the address; how
long each task waited and ran) and a task's log in one collapsible section per step, each line
with its time and stderr set apart."""

from __future__ import annotations

import re
from typing import Any

import httpx
from playwright.sync_api import Page, expect

from tests.e2e.helpers import submit, until_final
from tests.ui.conftest import Server, Shots

TOKENS = "/api/v1/admin-tokens"


def as_ci(server: Server) -> httpx.Client:
    """A client with a named admin token "ci": what it submits is recorded as "ci"."""
    with server.api() as client:
        existing = client.get(TOKENS).json()["items"]
        name = f"ci-{len(existing)}"
        created = client.post(TOKENS, json={"name": name})
        assert created.status_code == 201, created.text
    headers = {"Authorization": f"Bearer {created.json()['token']}"}
    return httpx.Client(base_url=server.url, headers=headers, timeout=30)


def created(client: httpx.Client, body: dict[str, Any]) -> str:
    response = client.post("/api/v1/agent-pools", json=body)
    assert response.status_code == 201, response.text
    pool_id: str = response.json()["pool_id"]
    return pool_id


def test_the_tasks_page_lists_tasks_across_pools_with_filters_and_durations(
    signed_in: Page, server: Server, shot: Shots
) -> None:
    running_pool = server.create_pool("ui-list-a", min_replicas=1, max_replicas=1, slots_per_pod=2)
    with server.api() as admin, as_ci(server) as ci:
        waiting_pool = created(admin, {"name": "ui-list-b", "pool_type": "static"})
        ci_name = ci.get("/api/v1/admin-tokens").json()["items"][-1]["name"]
        by_ci = submit(ci, running_pool, name="ci-build", command="sleep 1; echo built")
        by_admin = submit(admin, running_pool, name="admin-check", command="exit 3")
        queued = submit(ci, waiting_pool, name="ci-waits", command="true")
        assert until_final(admin, by_ci, seconds=60)["status"] == "succeeded"
        assert until_final(admin, by_admin, seconds=60)["status"] == "failed"

    page = signed_in
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Tasks").click()
    expect(page).to_have_url(re.compile(r"/tasks$"))
    table = page.get_by_role("table", name="Tasks")
    for name in ("ci-build", "admin-check", "ci-waits"):
        expect(table.get_by_role("link", name=name)).to_be_visible()

    # Durations: the finished task waited and ran (a second at least); the queued one only waits.
    done = table.get_by_role("row").filter(has=page.get_by_role("link", name="ci-build"))
    expect(done.get_by_test_id("run")).to_have_text(re.compile(r"^([1-9]\d*s|\d+m \d\ds)$"))
    expect(done.get_by_test_id("wait")).not_to_have_text("-")
    expect(done).to_contain_text("ui-list-a")
    waiting = table.get_by_role("row").filter(has=page.get_by_role("link", name="ci-waits"))
    expect(waiting.get_by_test_id("run")).to_have_text("-")
    expect(waiting.get_by_test_id("wait")).to_have_text(re.compile(r"\d"))
    expect(waiting).to_contain_text("queued")
    expect(waiting.get_by_role("link", name="ci-waits")).to_have_attribute(
        "href", f"/tasks/{queued}"
    )

    # By submitter: only ci's tasks, across both pools; the filter is in the address.
    page.get_by_label("Submitter").fill(ci_name)
    expect(table.get_by_role("link", name="admin-check")).to_have_count(0)
    expect(table.get_by_role("link", name="ci-build")).to_be_visible()
    expect(table.get_by_role("link", name="ci-waits")).to_be_visible()
    expect(page).to_have_url(re.compile(f"submitter={ci_name}"))
    # And by pool: ci's task in the static pool only.
    page.get_by_label("Pool").select_option(label="ui-list-b")
    expect(table.get_by_role("link", name="ci-build")).to_have_count(0)
    expect(table.get_by_role("link", name="ci-waits")).to_be_visible()
    expect(page.get_by_test_id("task-count")).to_have_text("1 task.")
    shot("filtered-by-submitter-and-pool")

    # By status, after a reload (the filters come back from the address).
    page.goto("/tasks?status=failed")
    expect(page.get_by_label("Status")).to_have_value("failed")
    expect(table.get_by_role("link", name="admin-check")).to_be_visible()
    expect(table.get_by_role("link", name="ci-build")).to_have_count(0)
    shot("filtered-by-status")
    table.get_by_role("link", name="admin-check").click()
    expect(page).to_have_url(re.compile(f"/tasks/{by_admin}$"))


def test_a_task_log_has_a_section_per_step_with_times_and_stderr_apart(
    signed_in: Page, server: Server, shot: Shots
) -> None:
    pool_id = server.create_pool("ui-log-steps", min_replicas=1, max_replicas=1, slots_per_pod=1)
    steps = [
        {"name": "build", "run": "echo compiling; echo a warning >&2; echo built"},
        {"name": "test", "run": "echo testing; echo 'test 2 broke' >&2; exit 3"},
    ]
    with server.api() as client:
        task_id = submit(client, pool_id, name="two-steps", steps=steps)
        assert until_final(client, task_id, seconds=60)["status"] == "failed"

    page = signed_in
    page.goto(f"/tasks/{task_id}")
    build, test = page.get_by_test_id("step-log-0"), page.get_by_test_id("step-log-1")
    summary = build.locator("summary")
    expect(summary).to_contain_text("Step 1: build")
    expect(summary).to_contain_text("succeeded")
    expect(summary).to_contain_text("exit 0")
    expect(test.locator("summary")).to_contain_text("Step 2: test")
    expect(test.locator("summary")).to_contain_text("failed")
    expect(test.locator("summary")).to_contain_text("exit 3")

    # Each step's output in its own section, each line with the time it was stored.
    expect(build.locator("pre")).to_contain_text("compiling")
    expect(build.locator("pre")).not_to_contain_text("testing")
    expect(test.locator("pre")).to_contain_text("testing")
    lines = build.locator(".log-line")
    expect(lines).to_have_count(3)
    for i in range(3):
        expect(lines.nth(i).locator("time")).to_have_text(re.compile(r"^\d\d:\d\d:\d\d\.\d{3}$"))
    # stderr is set apart: its own style and an "err" mark; stdout is not.
    expect(build.locator(".log-line.stderr")).to_have_text(re.compile(r"err\s*a warning\s*$"))
    expect(build.locator(".log-line:not(.stderr)").filter(has_text="built")).to_have_count(1)
    expect(test.locator(".log-line.stderr")).to_contain_text("test 2 broke")
    shot("log-with-step-sections")

    # A section folds away.
    summary.click()
    expect(build.locator("pre")).to_be_hidden()
    expect(test.locator("pre")).to_be_visible()
    shot("build-step-folded")
