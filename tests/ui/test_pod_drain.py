"""The Drain button of the pods grid, in a real browser against a real server with real agent
processes: it asks first, then the Pod drains, is deleted and replaced, and its row says so in
the calm style of a deliberate end (not as a failure)."""

from __future__ import annotations

from playwright.sync_api import Dialog, Page, expect

from tests.ui.conftest import SLOW, Server, Shots
from tests.ui.test_admin_ui import expect_ready_pods, pods_table, ready_rows


def test_drain_a_pod_from_the_pods_grid(signed_in: Page, server: Server, shot: Shots) -> None:
    page = signed_in
    pool_id = server.create_pool("ui-drain", min_replicas=1, max_replicas=1, slots_per_pod=1)
    page.goto(f"/pools/{pool_id}/pods")
    expect_ready_pods(page, 1)
    name = ready_rows(page).first.get_by_role("rowheader").inner_text()
    drain = page.get_by_role("button", name=f"Drain {name}")

    questions: list[str] = []

    def answer(accept: bool) -> None:
        def handle(dialog: Dialog) -> None:
            questions.append(dialog.message)
            if accept:
                dialog.accept()
            else:
                dialog.dismiss()

        page.once("dialog", handle)

    answer(accept=False)
    drain.click()
    (question,) = questions
    assert f"Drain Pod {name}?" in question
    expect(ready_rows(page)).to_have_count(1)  # asked, refused: nothing changed
    expect(page.get_by_role("status")).to_have_count(0)

    answer(accept=True)
    drain.click()
    expect(page.get_by_role("status")).to_contain_text(
        f"Pod {name} is draining: drained by configured"
    )
    shot("drain-asked")

    # Idle, it is deleted, and the pool's one Pod is replaced.
    old = pods_table(page).filter(has=page.get_by_role("rowheader", name=name))
    expect(old.locator(".badge-deleted")).to_have_text("deleted", timeout=SLOW)
    expect(old.locator(".outcome-deliberate")).to_have_text("drained by configured")
    expect(old.locator(".badge-failed, .outcome-failure")).to_have_count(0)
    expect(old.get_by_role("button", name=f"Drain {name}")).to_have_count(0)
    expect_ready_pods(page, 1)
    replacement = ready_rows(page).first.get_by_role("rowheader").inner_text()
    assert replacement != name
    expect(page.get_by_role("button", name=f"Drain {replacement}")).to_be_visible()
    shot("drained-and-replaced")
