"""The pool page's history chart after a burst, in a real browser against a real server whose
local pool starts real agent processes: the pool scales up for the burst and back down once it
is done, and the chart shows the busy slots and both decisions (a mark each, its reason on
hover), with nothing refused by the Content-Security-Policy."""

from __future__ import annotations

import re
import time
from typing import Any

from playwright.sync_api import ConsoleMessage, Page, expect

from tests.ui.conftest import Server, Shots

BURST = 6
SECONDS = 240.0


def wait_for(server: Server, pool_id: str, done: Any, what: str) -> None:
    deadline = time.monotonic() + SECONDS
    with server.api() as client:
        while time.monotonic() < deadline:
            if done(client):
                return
            time.sleep(0.5)
    raise AssertionError(f"{what} within {SECONDS:.0f} s:\n{server.tail(skip='heartbeat')}")


def actions(client: Any, pool_id: str) -> set[str]:
    events = client.get(f"/api/v1/agent-pools/{pool_id}/events", params={"limit": 500})
    return {e["action"] for e in events.json()["items"]}


def test_the_chart_of_a_burst_shows_busy_slots_and_the_scale_decisions(
    signed_in: Page, server: Server, shot: Shots
) -> None:
    page = signed_in
    refused: list[str] = []

    def on_console(message: ConsoleMessage) -> None:
        if "Content Security Policy" in message.text or "Content-Security-Policy" in message.text:
            refused.append(message.text)

    page.on("console", on_console)
    pool_id = server.create_pool(
        "ui-history", min_replicas=0, max_replicas=3, slots_per_pod=2, scale_down_delay_seconds=2
    )
    with server.api() as client:
        for n in range(BURST):
            body = {"pool_id": pool_id, "command": ["sh", "-c", f"sleep 2; echo {n}"]}
            assert client.post("/api/v1/tasks", json=body).status_code == 201

    def finished(client: Any) -> bool:
        listed = client.get("/api/v1/tasks", params={"pool_id": pool_id}).json()["items"]
        return len(listed) == BURST and all(t["status"] == "succeeded" for t in listed)

    def scaled_down(client: Any) -> bool:
        pods = client.get(f"/api/v1/agent-pools/{pool_id}/pods").json()["items"]
        ended = all(p["state"] in ("deleted", "failed") for p in pods)
        return ended and {"create_pods", "delete_pod"} <= actions(client, pool_id)

    wait_for(server, pool_id, finished, "the burst ran")
    wait_for(server, pool_id, scaled_down, "the pool scaled down to no Pod")
    time.sleep(2)  # the sampler has written the empty pool

    page.goto(f"/pools/{pool_id}/pods")
    chart = page.get_by_role("region", name="Pool history")
    expect(chart.get_by_role("button", name="1 hour")).to_have_attribute("aria-pressed", "true")
    peaks = chart.get_by_label("Peaks in this range")
    expect(peaks).to_contain_text("busy of")
    busy = int(re.search(r"at most (\d+) busy", peaks.inner_text()).group(1))  # type: ignore[union-attr]
    assert busy > 0, peaks.inner_text()
    expect(peaks).to_contain_text("(max_replicas 3)")

    # Decisions close together share a mark; its tip lists each with its reason.
    up = chart.locator(".chart-mark", has_text="create_pods").first
    down = chart.locator(".chart-mark", has_text="delete_pod").last
    up.hover()
    tip = up.get_by_role("tooltip")
    expect(tip).to_be_visible()
    expect(tip).to_contain_text("create_pods · scale_up · done")
    shot("burst-scale-up-mark")
    down.hover()
    expect(down.get_by_role("tooltip")).to_be_visible()
    expect(down.get_by_role("tooltip")).to_contain_text("delete_pod · scale_down · done")
    shot("burst-scale-down-mark")

    # The other ranges read again; a shorter one still holds the burst.
    chart.get_by_role("button", name="15 min").click()
    expect(chart.get_by_role("button", name="15 min")).to_have_attribute("aria-pressed", "true")
    expect(chart.locator(".chart-mark", has_text="create_pods").first).to_be_visible()
    expect(chart.locator(".u-legend")).to_contain_text("Busy slots")
    page.mouse.move(0, 0)
    shot("burst-15-minutes")
    assert refused == [], refused
