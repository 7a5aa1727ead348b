"""Browser tests of the admin UI: a real slotpool server (its own process, SQLite, the local
runtime starting real agent processes) serving the built UI, driven by Debian's Chromium through
Playwright. Nothing is mocked.

* The UI must be built (``ui/dist``): ``scripts/bootstrap`` does it; a missing build fails.
* Chromium: ``$SLOTPOOL_CHROMIUM`` or ``/usr/bin/chromium`` (``scripts/bootstrap --chromium``
  installs Debian's package); a missing browser fails, it never skips.
* Every test saves full-page screenshots to ``$SLOTPOOL_TEST_ARTIFACTS`` (default
  ``test-artifacts/ui/`` at the repository root).
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, BrowserContext, Page, Playwright, expect, sync_playwright

from tests.support.ports import free_port
from tests.support.server import ServerProcess, server_settings

ROOT = Path(__file__).resolve().parents[2]
UI_DIST = ROOT / "ui" / "dist"
ADMIN = "ui-admin-token-0123456789abcdef"
# Enough for a Pod to start (a fresh agent process) on a busy 2-core machine.
SLOW = 30_000

expect.set_options(timeout=10_000)


class Server(ServerProcess):
    """The server the browser talks to; ``create_pool`` makes a local pool over the API."""

    def api(self) -> httpx.Client:
        return self.client(timeout=30)

    def create_pool(self, name: str, **config: Any) -> str:
        """A local pool made over the API, for tests about something else than creating one."""
        body = {"name": name, "pool_type": "local", "k8s_config": config}
        with self.api() as client:
            response = client.post("/api/v1/agent-pools", json=body)
        assert response.status_code == 201, response.text
        pool_id: str = response.json()["pool_id"]
        return pool_id


@pytest.fixture(scope="package")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    if not (UI_DIST / "index.html").is_file():
        pytest.fail(f"the UI is not built ({UI_DIST}); run scripts/bootstrap (it builds ui/)")
    tmp = tmp_path_factory.mktemp("ui-server")
    port = free_port()
    # Pool history sampled every second: the chart of a short burst has something to draw.
    settings = server_settings(
        tmp, admin=ADMIN, port=port, ui_dir=UI_DIST, history_interval_seconds=1
    )
    running = Server.of(settings, tmp / "server.log", port=port).started()
    try:
        yield running
    finally:
        # A graceful stop waits for the agents' long-poll claims (up to 25 s): not worth it here.
        running.stop(grace=3)


def chromium_path() -> str:
    path = os.environ.get("SLOTPOOL_CHROMIUM", "/usr/bin/chromium")
    if not os.access(path, os.X_OK):
        pytest.fail(
            f"no Chromium at {path}: run scripts/bootstrap --chromium (installs Debian's "
            "'chromium' package) or set SLOTPOOL_CHROMIUM"
        )
    return path


# Package scope, not session: Playwright's sync API keeps an event loop running in this thread
# while it is open, and an async test collected after tests/ui would find it running.
@pytest.fixture(scope="package")
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as running:
        yield running


@pytest.fixture(scope="package")
def browser(playwright: Playwright) -> Iterator[Browser]:
    launched = playwright.chromium.launch(
        executable_path=chromium_path(),
        headless=True,
        # Root in a container: Chromium's sandbox needs user namespaces it may not have.
        args=["--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"],
    )
    try:
        yield launched
    finally:
        launched.close()


@pytest.fixture(scope="session")
def artifacts() -> Path:
    default = ROOT / "test-artifacts" / "ui"
    directory = Path(os.environ.get("SLOTPOOL_TEST_ARTIFACTS") or default)
    directory.mkdir(parents=True, exist_ok=True)
    return directory


@pytest.fixture
def context(browser: Browser, server: Server) -> Iterator[BrowserContext]:
    # A laptop screen: the UI must be readable at 1366x768.
    made = browser.new_context(viewport={"width": 1366, "height": 768}, base_url=server.url)
    made.set_default_timeout(15_000)
    try:
        yield made
    finally:
        made.close()


class Shots:
    """Full-page screenshots named after the test: ``<test>-<n>-<what>.png``."""

    def __init__(self, page: Page, directory: Path, test: str) -> None:
        self.page, self.directory, self.test, self.count = page, directory, test, 0

    def __call__(self, what: str) -> Path:
        self.count += 1
        name = re.sub(r"[^a-z0-9]+", "-", f"{self.test}-{self.count:02d}-{what}".lower())
        path = self.directory / f"{name.strip('-')}.png"
        self.page.screenshot(path=str(path), full_page=True)
        return path


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    if report.when == "call" and report.failed:
        item.stash[FAILED] = True
    return report


FAILED = pytest.StashKey[bool]()


@pytest.fixture
def page(
    context: BrowserContext, artifacts: Path, request: pytest.FixtureRequest
) -> Iterator[Page]:
    opened = context.new_page()
    yield opened
    if request.node.stash.get(FAILED, False):  # what the page showed when the test failed
        name = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower()).strip("-")
        with contextlib.suppress(Exception):
            opened.screenshot(path=str(artifacts / f"FAILED-{name}.png"), full_page=True)


@pytest.fixture
def shot(page: Page, artifacts: Path, request: pytest.FixtureRequest) -> Shots:
    return Shots(page, artifacts, request.node.name.removeprefix("test_"))


def sign_in(page: Page) -> None:
    page.goto("/")
    page.get_by_label("Admin token").fill(ADMIN)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Pools", level=1)).to_be_visible()


@pytest.fixture
def signed_in(page: Page) -> Page:
    sign_in(page)
    return page
