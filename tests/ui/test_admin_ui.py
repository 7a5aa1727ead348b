"""The admin UI in a real browser against a real server: every assertion is on what the page
shows, after the server did the work (agents are real processes of the local runtime)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from playwright.sync_api import BrowserContext, Locator, Page, expect

from tests.ui.conftest import ADMIN, SLOW, Server, Shots

DAYS = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]


def pods_table(page: Page) -> Locator:
    return page.get_by_role("table", name="Pods and slots").locator("tbody tr")


def field(page: Page, label: str) -> Locator:
    """The form field (label, input and its server message) around the input named ``label``."""
    return page.locator(".field").filter(has=page.get_by_label(label, exact=True))


def ready_rows(page: Page) -> Locator:
    """Rows of the pods grid whose Pod is ready (with the pool's current configuration)."""
    ready = page.locator(".badge-ready")
    return pods_table(page).filter(has=ready).filter(has_not=page.locator(".badge-outdated"))


def expect_ready_pods(page: Page, count: int) -> None:
    expect(ready_rows(page)).to_have_count(count, timeout=SLOW)


@pytest.fixture(scope="module")
def task_pool(server: Server) -> str:
    """A local pool with one Pod of two slots, made over the API."""
    return server.create_pool("ui-tasks", min_replicas=1, max_replicas=1, slots_per_pod=2)


def test_sign_in_with_the_admin_token_and_back_on_401(page: Page, shot: Shots) -> None:
    page.goto("/")
    token = page.get_by_label("Admin token")
    expect(token).to_be_focused()  # keyboard first: type and press Enter
    shot("sign-in")
    page.keyboard.type("not-the-token")
    page.keyboard.press("Enter")
    expect(page.get_by_role("alert")).to_contain_text("refused this token")

    token.fill(ADMIN)
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name="Pools", level=1)).to_be_visible()
    page.reload()  # kept in sessionStorage for this tab
    expect(page.get_by_role("heading", name="Pools", level=1)).to_be_visible()

    # A deep link is answered by the SPA fallback; the API's own paths are not shadowed.
    page.goto("/pools/pool-0000000000000000/tokens")
    expect(page.get_by_role("alert")).to_contain_text("pool-0000000000000000 not found")
    assert page.request.get("/api/v1/no-such-thing").json()["error"] == "Not Found"
    assert page.request.get("/openapi.json").json()["info"]["title"] == "slotpool"

    # A token the server no longer accepts sends the user back to the sign-in page.
    page.evaluate("sessionStorage.setItem('slotpool.admin-token', 'revoked-meanwhile')")
    page.goto("/")
    expect(page.get_by_label("Admin token")).to_be_visible()
    shot("signed-out-after-401")


def test_create_a_pool_configure_it_with_a_mistake_then_see_its_pods(
    signed_in: Page, shot: Shots
) -> None:
    page = signed_in
    page.get_by_label("Pool name").fill("ui-config")
    page.get_by_label("Pool type").select_option("local")
    page.get_by_role("button", name="Create pool").click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("ui-config")
    expect(page.get_by_role("link", name="Configuration")).to_have_attribute("aria-current", "page")

    # The seed's bug, from the user's side: a wrong CPU limit is refused by the server, and the
    # message is shown next to the CPU limit field, nowhere else.
    page.get_by_label("CPU limit", exact=True).fill("lots")
    page.get_by_label("Min replicas").fill("2")
    page.get_by_label("Slots per Pod").fill("2")
    page.get_by_role("button", name="Save configuration").click()
    cpu_error = field(page, "CPU limit").get_by_role("alert")
    expect(cpu_error).to_contain_text("'lots' is not a Kubernetes quantity")
    expect(page.get_by_label("CPU limit", exact=True)).to_have_attribute("aria-invalid", "true")
    expect(field(page, "Memory limit").get_by_role("alert")).to_have_count(0)
    shot("config-error-next-to-the-field")

    page.get_by_label("CPU limit", exact=True).fill("1")
    preview = page.get_by_test_id("pod-preview")
    expect(preview).to_contain_text("kind: Pod")
    expect(preview).to_contain_text("restartPolicy: Never")
    expect(preview).to_contain_text("cpu: '1'")
    expect(preview).to_contain_text("slotpool.io/slots: '2'")
    # The diff against what the running Pods are built from shows the new limit.
    diff = page.get_by_label("Changes against the saved Pod")
    expect(diff.locator(".diff-add").filter(has_text="cpu: '1'")).to_have_count(1)
    shot("config-preview-and-diff")

    page.get_by_role("button", name="Save configuration").click()
    # The save rebuilds the pool's idle Pods (agent processes) before it answers.
    expect(page.get_by_role("status")).to_contain_text(
        "K8s configuration updated successfully", timeout=SLOW
    )
    expect(cpu_error).to_have_count(0)
    expect(page.get_by_test_id("diff-empty")).to_be_visible()
    shot("config-saved")

    page.get_by_role("link", name="Pods", exact=True).click()
    expect_ready_pods(page, 2)
    expect(ready_rows(page).first.locator("td.slot-idle")).to_have_count(2)
    expect(page.get_by_role("columnheader", name="Node")).to_be_visible()
    shot("pods-ready")

    page.get_by_role("link", name="Pools", exact=True).first.click()
    row = page.get_by_role("row").filter(has=page.get_by_role("link", name="ui-config"))
    expect(row).to_contain_text("local")
    # Pods ready / total (the total also counts a Pod of the first configuration that ended
    # while it was being replaced, when the save came before that Pod had registered)
    expect(row.get_by_role("cell").nth(1)).to_have_text(re.compile(r"^2 / [23]$"))
    expect(row.get_by_role("cell").nth(2)).to_have_text("0 busy / 4")  # slots of live Pods
    shot("pools-list")


def test_submit_a_task_and_follow_its_log(signed_in: Page, task_pool: str, shot: Shots) -> None:
    page = signed_in
    page.goto(f"/pools/{task_pool}")
    # Keyboard: the sections are real links; focus one and press Enter.
    page.get_by_role("navigation", name="Pool sections").get_by_role(
        "link", name="Tasks", exact=True
    ).focus()
    page.keyboard.press("Enter")
    expect(page).to_have_url(re.compile(f"/pools/{task_pool}/tasks$"))
    page.get_by_label("Task name").fill("hello")
    page.get_by_label("Step 1 command").fill(
        "echo hello-from-the-ui; echo from slot $SLOTPOOL_SLOT"
    )
    page.get_by_role("button", name="Submit task").click()
    expect(page).to_have_url(re.compile(r"/tasks/task-[a-z0-9]{16}$"))
    log = page.get_by_role("log")
    expect(log).to_contain_text("hello-from-the-ui", timeout=SLOW)
    expect(page.get_by_role("heading", level=1)).to_contain_text("succeeded", timeout=SLOW)
    expect(page.get_by_role("button", name="Cancel task")).to_have_count(0)
    shot("task-succeeded-with-log")

    page.get_by_role("link", name="pool tasks").click()
    row = page.get_by_role("row").filter(has=page.get_by_role("link", name="hello"))
    expect(row).to_contain_text("succeeded")


def test_an_approval_gated_step_waits_keeps_its_slot_and_runs_once_approved(
    signed_in: Page, task_pool: str, shot: Shots
) -> None:
    page = signed_in
    page.goto(f"/pools/{task_pool}/tasks")
    page.get_by_label("Task name").fill("plan-and-apply")
    page.get_by_label("Step 1 command").fill("echo planned > plan.txt; echo plan done")
    page.get_by_role("button", name="Add a step").click()
    page.get_by_label("Step 2 command").fill("cat plan.txt; echo applied")
    page.get_by_label("Step 2 requires approval before it runs").check()
    page.get_by_role("button", name="Submit task").click()

    expect(page.get_by_role("heading", level=1)).to_contain_text("awaiting approval", timeout=SLOW)
    expect(page.get_by_role("log")).to_contain_text("plan done")
    expect(page.get_by_role("log")).not_to_contain_text("applied")
    step_2 = page.get_by_role("table", name="Steps").locator("tbody tr").nth(1)
    expect(step_2).to_contain_text("waiting")
    task_id = page.url.rsplit("/", 1)[1]
    shot("awaiting-approval")

    # The pods grid shows the slot kept for the task, with a link to it.
    page.goto(f"/pools/{task_pool}/pods")
    reserved = page.locator("td.slot-reserved")
    expect(reserved).to_have_count(1)
    shot("reserved-slot")
    reserved.get_by_role("link", name=task_id).click()
    expect(page).to_have_url(re.compile(f"/tasks/{task_id}$"))

    page.get_by_role("button", name="Approve step 2").click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("succeeded", timeout=SLOW)
    # Same slot, same working directory: the second step read what the first one wrote.
    applied = page.get_by_test_id("step-log-1").locator(".log-line")
    expect(applied).to_have_text([re.compile(r"planned\s*$"), re.compile(r"applied\s*$")])
    steps = page.get_by_role("table", name="Steps").locator("tbody tr")
    expect(steps.nth(0)).to_contain_text("succeeded (exit 0)")
    expect(steps.nth(1)).to_contain_text("approved by")
    expect(steps.nth(1)).to_contain_text("succeeded (exit 0)")
    shot("approved-and-succeeded")


def test_the_grid_shows_a_busy_slot_within_seconds_and_the_task_can_be_cancelled(
    signed_in: Page, server: Server, task_pool: str, shot: Shots
) -> None:
    page = signed_in
    page.goto(f"/pools/{task_pool}/pods")
    expect_ready_pods(page, 1)
    expect(page.locator("td.slot-busy")).to_have_count(0)
    with server.api() as client:
        body = {"pool_id": task_pool, "name": "long", "command": "echo started; sleep 60"}
        response = client.post("/api/v1/tasks", json=body)
        assert response.status_code == 201, response.text
        task_id = response.json()["id"]
    # Live: the grid polls every second, so the busy slot shows up within a couple of seconds.
    busy = page.locator("td.slot-busy")
    expect(busy).to_have_count(1, timeout=4_000)
    expect(busy.get_by_role("link", name=task_id)).to_be_visible()
    shot("busy-slot")

    busy.get_by_role("link", name=task_id).click()
    expect(page.get_by_role("log")).to_contain_text("started", timeout=SLOW)
    page.get_by_role("button", name="Cancel task").click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("cancelled", timeout=SLOW)
    expect(page.get_by_role("button", name="Cancel task")).to_have_count(0)
    shot("cancelled")

    page.goto(f"/pools/{task_pool}/pods")
    expect_ready_pods(page, 1)
    expect(page.locator("td.slot-busy")).to_have_count(0)


def _window_covering_now() -> tuple[str, str, str]:
    """From an hour ago to two hours ahead (UTC), on the weekday the window starts."""
    now = datetime.now(UTC)
    start, end = now - timedelta(hours=1), now + timedelta(hours=2)
    return start.strftime("%H:%M"), end.strftime("%H:%M"), DAYS[start.weekday()]


@pytest.fixture
def freeze_pool(server: Server) -> str:
    return server.create_pool("ui-freeze", min_replicas=1, max_replicas=2, slots_per_pod=1)


def test_a_freeze_window_removes_idle_pods_and_the_one_time_unfreeze_brings_them_back(
    signed_in: Page, freeze_pool: str, shot: Shots
) -> None:
    page = signed_in
    page.goto(f"/pools/{freeze_pool}/pods")
    expect_ready_pods(page, 1)

    page.get_by_role("link", name="Freeze windows").click()
    expect(page.get_by_role("heading", name="No freeze window is active")).to_be_visible()
    start, end, weekday = _window_covering_now()
    page.get_by_label("From", exact=True).fill(start)
    page.get_by_label("To", exact=True).fill(end)
    for day in DAYS:
        page.get_by_role("checkbox", name=day, exact=True).set_checked(day == weekday)
    page.get_by_label("Time zone").fill("UTC")
    page.get_by_label("Note").fill("release freeze")
    page.get_by_role("button", name="Add window").click()

    windows = page.get_by_role("table", name="Freeze windows")
    expect(windows).to_contain_text(f"{start}\N{EN DASH}{end}")
    expect(windows).to_contain_text("active now")
    expect(page.get_by_text(re.compile(r"^frozen$")).first).to_be_visible()
    now_cell = page.locator("table.week-grid td.now")
    expect(now_cell).to_have_count(1)
    expect(now_cell).to_have_attribute("aria-label", re.compile(r"frozen \(now\)$"))
    shot("freeze-active-week-view")

    page.get_by_role("link", name="Pods", exact=True).click()
    # The idle Pod is deleted (its record may stay, ended, with the reason) and none is created.
    pods_tab = page.get_by_role("link", name="Pods", exact=True)
    expect(pods_tab).to_have_attribute("aria-current", "page")
    expect(page.get_by_text("Loading Pods")).to_have_count(0)  # the grid has been drawn
    live = page.locator(".badge-ready, .badge-starting, .badge-pending, .badge-draining")
    expect(live).to_have_count(0, timeout=SLOW)
    expect(
        page.get_by_text(re.compile(r"frozen by window|freeze window is active")).first
    ).to_be_visible()
    shot("frozen-no-pods")

    page.get_by_role("link", name="Pools", exact=True).first.click()
    row = page.get_by_role("row").filter(has=page.get_by_role("link", name="ui-freeze"))
    expect(row.get_by_text("frozen", exact=True)).to_be_visible()
    shot("pools-list-frozen-badge")

    page.go_back()
    page.get_by_role("link", name="Freeze windows").click()
    page.get_by_role("button", name="Lift freeze once").click()
    expect(page.get_by_text("freeze lifted", exact=True)).to_be_visible()
    page.get_by_role("link", name="Pods", exact=True).click()
    expect_ready_pods(page, 1)
    shot("unfrozen-pods-back")

    # One window at a time: edit it, then delete it.
    page.get_by_role("link", name="Freeze windows").click()
    page.get_by_role("button", name=f"Edit window {start}-{end}").click()
    page.get_by_label("Note").fill("release freeze, extended")
    page.get_by_role("button", name="Save the window").click()
    expect(windows).to_contain_text("release freeze, extended")
    page.get_by_role("button", name=f"Delete window {start}-{end}").click()
    expect(page.get_by_text("No freeze window.")).to_be_visible()
    expect(page.locator("table.week-grid")).to_have_count(0)


def test_tokens_are_shown_once_copied_and_revoked(
    signed_in: Page, context: BrowserContext, server: Server, shot: Shots
) -> None:
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=server.url)
    pool_id = server.create_pool("ui-tokens", min_replicas=0)
    page = signed_in
    page.goto(f"/pools/{pool_id}/tokens")
    page.get_by_label("Token name").fill("ci-runner")
    page.get_by_role("button", name="Create token").click()
    value = page.get_by_label("New token value")
    expect(value).to_have_value(re.compile(r".{20,}"))
    secret = value.input_value()
    page.get_by_role("button", name="Copy", exact=True).click()
    expect(page.get_by_role("button", name="Copied")).to_be_visible()
    assert page.evaluate("navigator.clipboard.readText()") == secret
    shot("token-shown-once")

    agent_url = f"{server.url}/api/v1/agent/pools/{pool_id}"
    with httpx.Client(headers={"Authorization": f"Bearer {secret}"}) as agent:
        assert agent.get(agent_url).status_code == 200
        page.get_by_role("button", name="Done").click()
        expect(page.get_by_label("New token value")).to_have_count(0)
        row = page.get_by_role("row").filter(has_text="ci-runner")
        expect(row).to_contain_text("active")

        page.once("dialog", lambda dialog: dialog.accept())
        page.get_by_role("button", name="Revoke token ci-runner").click()
        expect(row).to_contain_text("revoked")
        assert agent.get(agent_url).status_code == 401
    shot("token-revoked")


def decision_log(page: Page) -> Locator:
    return page.get_by_role("table", name="Decision log").locator("tbody tr")


def decision(page: Page, action: str, reason: str | None = None) -> Locator:
    """Rows of the decision log whose action (and reason, if given) is this."""
    rows = decision_log(page).filter(has=page.get_by_role("rowheader", name=action, exact=True))
    return rows.filter(has=page.get_by_role("cell", name=reason, exact=True)) if reason else rows


def test_the_decision_log_says_why_the_pool_scaled_and_follows_a_secret_rotation(
    signed_in: Page, server: Server, shot: Shots
) -> None:
    pool_id = server.create_pool("ui-decisions", min_replicas=2, max_replicas=3, slots_per_pod=1)
    page = signed_in
    page.goto(f"/pools/{pool_id}/pods")
    expect_ready_pods(page, 2)
    pods = ready_rows(page).get_by_role("rowheader").all_inner_texts()
    # Three tasks for two slots: one waits, and the controller adds a Pod for it (max 3).
    with server.api() as client:
        task_ids = []
        for n in range(3):
            body = {"pool_id": pool_id, "name": f"decided-{n}", "command": "sleep 4; echo ran"}
            response = client.post("/api/v1/tasks", json=body)
            assert response.status_code == 201, response.text
            task_ids.append(response.json()["id"])
    for task_id in task_ids:
        page.goto(f"/tasks/{task_id}")
        expect(page.get_by_role("heading", level=1)).to_contain_text("succeeded", timeout=SLOW)

    page.goto(f"/pools/{pool_id}")
    page.get_by_role("link", name="Decision log").click()
    expect(page).to_have_url(re.compile(f"/pools/{pool_id}/events$"))
    # Why the pool has its first two Pods: min_replicas, with what the controller saw then.
    first = decision(page, "create_pods", "min_replicas")
    expect(first).to_have_count(1)
    cells = first.get_by_role("cell")
    expect(cells.nth(2)).to_have_text("done")  # outcome
    for pod in pods:
        expect(cells.nth(3)).to_contain_text(pod)
    expect(cells.nth(4)).to_contain_text("queued 0 · busy 0 · reserved 0 · idle 0 slots")
    expect(cells.nth(4)).to_contain_text("Pods 0 · desired 2 · min..max 2..3")
    expect(cells.nth(4)).not_to_contain_text("frozen")
    expect(cells.nth(5)).to_contain_text("(min 2, max 3)")  # the controller's message
    # ...and the third: a queued task, with both slots busy.
    third = decision(page, "create_pods", "scale_up")
    expect(third).to_have_count(1)
    expect(third.get_by_role("cell").nth(2)).to_have_text("done")
    expect(third.get_by_role("cell").nth(4)).to_contain_text(
        re.compile(r"queued [1-9]\d* · busy \d+ · reserved 0 · idle \d+ slots")
    )
    expect(third.get_by_role("cell").nth(4)).to_contain_text("desired 3 · min..max 2..3")
    shot("decision-log-create-pods")

    # Live: a rotation of the Pod Secret's token, made elsewhere, shows up without a reload,
    # then the Pods rebuilt to take the new token, then the old token revoked.
    with server.api() as client:
        response = client.get(f"/api/v1/agent-pools/{pool_id}")
        old_secret_token = response.json()["agent_token"]
        assert old_secret_token, response.text
        response = client.post(
            f"/api/v1/agent-pools/{pool_id}/tokens/{old_secret_token}/rotate",
            json={},
            timeout=90,  # it answers once the idle Pods are rebuilt (their agents stopped)
        )
        assert response.status_code == 200, response.text
        new_secret_token = response.json()["new"]["name"]
    rotation = decision(page, "rotate_token")
    expect(rotation).to_have_count(1, timeout=5_000)  # the log polls every 2 s
    expect(rotation.get_by_role("cell").nth(1)).to_have_text("token_rotation")
    expect(rotation).to_contain_text(f"old {old_secret_token} · new {new_secret_token}")
    rebuilt = decision(page, "rebuild_pod")
    expect(rebuilt.first.get_by_role("cell").nth(1)).to_have_text("config_changed", timeout=SLOW)
    expect(decision(page, "revoke_token", "rotation_done")).to_have_count(1, timeout=SLOW)
    shot("decision-log-secret-rotation")

    # Older pages, five a page, down to the first decision: the min_replicas Pods.
    page.get_by_label("Per page").select_option("5")
    pager = page.get_by_role("navigation", name="Decision log pages")
    status, older = pager.get_by_role("status"), pager.get_by_role("button", name="Older")
    expect(status).to_have_text(re.compile(r"^Page 1 · ([6-9]|\d\d+) decisions in all$"))
    expect(decision_log(page)).to_have_count(5)
    expect(pager.get_by_role("button", name="Newest")).to_be_disabled()
    expect(older).to_be_enabled()
    older.click()
    expect(status).to_have_text(re.compile(r"^Page 2 · "))
    expect(page.get_by_text("An older page (not updated).")).to_be_visible()
    number = 2
    while older.is_enabled() and number < 20:  # the pages are drawn: their number is shown
        older.click()
        number += 1
        expect(status).to_have_text(re.compile(f"^Page {number} · "))
    expect(older).to_be_disabled()
    # The oldest decision (never on page 1, which holds the five newest of six or more).
    expect(decision(page, "create_pods", "min_replicas")).to_have_count(1)
    shot("decision-log-oldest-page")
    pager.get_by_role("button", name="Newest").click()
    expect(status).to_have_text(re.compile(r"^Page 1 · "))
    expect(decision_log(page)).to_have_count(5)
    expect(page.get_by_text("Newest first, updated every 2 seconds.")).to_be_visible()

    # The tokens list marks the token the Pod Secret now holds.
    page.get_by_role("link", name="Tokens", exact=True).click()
    secret_row = page.get_by_role("row").filter(has_text="in the Pod Secret")
    expect(secret_row).to_have_count(1)
    expect(secret_row.get_by_role("rowheader")).to_contain_text(new_secret_token)
    expect(page.get_by_role("row").filter(has_text=old_secret_token)).to_contain_text("revoked")
    shot("tokens-secret-marked")


def test_rotate_a_token_shows_the_new_value_once_and_the_old_one_overlaps(
    signed_in: Page, context: BrowserContext, server: Server, shot: Shots
) -> None:
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=server.url)
    pool_id = server.create_pool("ui-rotate", min_replicas=0)
    with server.api() as client:
        response = client.post(f"/api/v1/agent-pools/{pool_id}/tokens", json={"name": "deployer"})
        assert response.status_code == 201, response.text
        old_value = response.json()["token"]
    page = signed_in
    page.goto(f"/pools/{pool_id}/tokens")
    page.get_by_role("button", name="Rotate token deployer").click()
    overlap = page.get_by_label("Overlap (seconds)")
    expect(overlap).to_have_value("3600")
    overlap.fill("600")
    shot("rotate-form")
    page.get_by_role("button", name="Rotate now").click()

    shown = page.get_by_role("status").filter(has=page.get_by_label("New token value"))
    expect(shown.get_by_role("heading")).to_have_text(
        re.compile(r"^Token “deployer-[0-9a-f]{4}” replaces “deployer”$")
    )
    expect(shown).to_contain_text("which expires after the overlap")  # the server's message
    value = page.get_by_label("New token value")
    expect(value).to_have_value(re.compile(r".{20,}"))
    new_value = value.input_value()
    assert new_value != old_value
    new_name = shown.get_by_role("heading").inner_text().split("“")[1].split("”")[0]
    page.get_by_role("button", name="Copy", exact=True).click()
    expect(page.get_by_role("button", name="Copied")).to_be_visible()
    assert page.evaluate("navigator.clipboard.readText()") == new_value

    # Both rows are active; the old one now expires after the overlap, the new one never.
    old_row = page.get_by_role("row").filter(
        has=page.get_by_role("rowheader", name="deployer", exact=True)
    )
    new_row = page.get_by_role("row").filter(
        has=page.get_by_role("rowheader", name=new_name, exact=True)
    )
    expect(old_row).to_contain_text("active")
    expect(old_row.get_by_role("cell").nth(2)).to_contain_text(re.compile(r"in (9|10)m$"))
    expect(new_row).to_contain_text("active")
    expect(new_row.get_by_role("cell").nth(2)).to_have_text("-")
    # Tokens handed out by hand; the pool's own token (in its Pod Secret) is another row.
    expect(page.get_by_text("in the Pod Secret")).to_have_count(1)
    expect(old_row).not_to_contain_text("in the Pod Secret")
    expect(new_row).not_to_contain_text("in the Pod Secret")
    shot("rotated-new-value-shown-once")

    agent_url = f"{server.url}/api/v1/agent/pools/{pool_id}"
    for secret in (old_value, new_value):  # the overlap: both work
        headers = {"Authorization": f"Bearer {secret}"}
        assert httpx.get(agent_url, headers=headers).status_code == 200

    page.get_by_role("button", name="Done").click()
    expect(page.get_by_label("New token value")).to_have_count(0)
    page.reload()
    expect(new_row).to_contain_text("active")
    expect(page.get_by_label("New token value")).to_have_count(0)  # shown once, never again
    expect(page.get_by_role("button", name=f"Rotate token {new_name}")).to_be_visible()
    shot("rotated-after-reload")


def test_delete_a_pool(signed_in: Page, server: Server, shot: Shots) -> None:
    pool_id = server.create_pool("ui-delete-me", min_replicas=0)
    page = signed_in
    page.goto(f"/pools/{pool_id}")
    expect(page.get_by_role("heading", level=1)).to_contain_text("ui-delete-me")
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Delete pool ui-delete-me").click()
    expect(page.get_by_role("heading", name="Pools", level=1)).to_be_visible()
    expect(page.get_by_text("Loading pools")).to_have_count(0)  # the list has been drawn
    expect(page.get_by_role("link", name="ui-delete-me")).to_have_count(0)
    with server.api() as client:
        assert client.get(f"/api/v1/agent-pools/{pool_id}").status_code == 404
    shot("deleted")
