"""The Cluster page: the replicas of the installation, which one leads, and a replica whose Pod
settings disagree with the leader's. On SQLite the one server (it always leads); on PostgreSQL two
real server processes, the second with another public URL, then the leader stopped (SIGTERM) and
the follower taking over."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect

from tests.e2e.helpers import wait_for
from tests.support.ports import free_port
from tests.support.postgres import PostgresServer
from tests.support.server import ServerProcess, server_settings
from tests.ui.conftest import ADMIN, Server, Shots, sign_in


def test_one_server_on_sqlite_leads_alone(signed_in: Page, server: Server, shot: Shots) -> None:
    page = signed_in
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Cluster").click()
    expect(page.get_by_role("heading", name="Cluster", level=1)).to_be_visible()
    expect(page.get_by_test_id("database")).to_have_text("sqlite")
    rows = page.get_by_test_id("replica")
    expect(rows).to_have_count(1)
    row = rows.first
    expect(row.get_by_text("leader", exact=True)).to_be_visible()
    expect(row.get_by_text("this page", exact=True)).to_be_visible()
    expect(row).to_contain_text("agrees")
    leader = page.get_by_test_id("leader")
    replica_id = row.get_attribute("data-replica")
    assert replica_id
    expect(leader).to_contain_text(replica_id)
    expect(page.get_by_test_id("disagreement")).to_have_count(0)
    with server.api() as client:
        cluster = client.get("/api/v1/cluster").json()
    assert cluster["self"] == replica_id
    expect(page.get_by_test_id("term")).to_have_text(str(cluster["leader"]["term"]))
    shot("one-server-leads")


# -- two replicas on PostgreSQL ----------------------------------------------------------------


def _replica(work: Path, url: str, name: str) -> ServerProcess:
    """A server on ``url`` named ``name``, short lease, no local runtime; its public URL is its
    own address, so two of them disagree on it."""
    port = free_port()
    work.mkdir()
    settings = server_settings(
        work,
        admin=ADMIN,
        port=port,
        database_url=url,
        replica_id=name,
        leader_lease_seconds=3,
        leader_renew_seconds=0.5,
        local_runtime=False,
    )
    return ServerProcess.of(settings, work / "server.log", port=port)


def _cluster(replica: ServerProcess) -> dict[str, Any]:
    with replica.client(timeout=10) as client:
        answer = client.get("/api/v1/cluster")
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


@pytest.fixture
def two_replicas(
    pg_server: PostgresServer, tmp_path: Path
) -> Iterator[tuple[ServerProcess, ServerProcess]]:
    with pg_server.temporary_database() as url:
        first = _replica(tmp_path / "a", url, "replica-a").started()
        try:
            wait_for(
                lambda: (_cluster(first)["leader"] or {}).get("replica_id") == "replica-a",
                what="replica-a leads",
                seconds=30,
            )
            second = _replica(tmp_path / "b", url, "replica-b").started()
            try:
                yield first, second
            finally:
                second.stop(grace=5)
        finally:
            first.stop(grace=5)


@pytest.fixture
def pages(browser: Browser) -> Iterator[Callable[[ServerProcess], Page]]:
    """A page of a browser context signed in to the given replica (a context per replica: the
    token is kept per origin)."""
    contexts: list[BrowserContext] = []

    def signed_in(replica: ServerProcess) -> Page:
        made = browser.new_context(viewport={"width": 1366, "height": 768}, base_url=replica.url)
        made.set_default_timeout(15_000)
        contexts.append(made)
        page = made.new_page()
        sign_in(page)
        return page

    try:
        yield signed_in
    finally:
        for made in contexts:
            made.close()


@pytest.mark.postgres
def test_two_replicas_a_follower_that_disagrees_and_a_hand_over(
    two_replicas: tuple[ServerProcess, ServerProcess],
    pages: Callable[[ServerProcess], Page],
    artifacts: Path,
) -> None:
    first, second = two_replicas
    page = pages(first)
    page.goto("/cluster")
    expect(page.get_by_test_id("database")).to_have_text("postgresql")
    expect(page.get_by_test_id("replica")).to_have_count(2)
    leader_row = page.locator('[data-replica="replica-a"]')
    follower_row = page.locator('[data-replica="replica-b"]')
    expect(leader_row.get_by_text("leader", exact=True)).to_be_visible()
    expect(leader_row.get_by_text("this page", exact=True)).to_be_visible()
    expect(follower_row.get_by_text("leader", exact=True)).to_have_count(0)
    expect(follower_row).to_contain_text("disagrees")
    # The follower's public URL is its own address: the warning names the variable and both.
    warning = page.get_by_test_id("disagreement")
    expect(warning).to_have_count(1)
    expect(warning).to_contain_text("Pod settings differ from the leader's")
    expect(warning).to_contain_text(
        f"SLOTPOOL_PUBLIC_URL: {second.url} here, {first.url} on the leader"
    )
    leader = page.get_by_test_id("leader")
    expect(leader).to_contain_text("replica-a")
    expect(leader).to_contain_text(
        re.compile(r"Lease expires .+\(in \d+s; renewed while it leads\)")
    )
    term = int(page.get_by_test_id("term").inner_text())
    Shots(page, artifacts, "two_replicas")("follower-disagrees")

    # SIGTERM: the leader hands over at once; the follower leads with the next term.
    first.stop(grace=30)
    wait_for(
        lambda: (_cluster(second)["leader"] or {}).get("replica_id") == "replica-b",
        what="replica-b leads",
        seconds=30,
    )
    page = pages(second)
    page.goto("/cluster")
    row = page.locator('[data-replica="replica-b"]')
    expect(row.get_by_text("leader", exact=True)).to_be_visible()
    expect(row).to_contain_text("agrees")  # the leader agrees with itself
    expect(page.get_by_test_id("leader")).to_contain_text("replica-b")
    expect(page.get_by_test_id("term")).to_have_text(re.compile(r"^\d+$"))
    assert int(page.get_by_test_id("term").inner_text()) > term
    Shots(page, artifacts, "two_replicas_after")("follower-took-over")
