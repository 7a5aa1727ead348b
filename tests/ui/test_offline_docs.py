"""The OpenAPI docs render with the machine cut off from the outside: every request that is not to
127.0.0.1 is refused by the browser, the pages must render from what the server ships, and none
was even tried. The pages' Content-Security-Policy lets them run (no violation reported)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import BrowserContext, Page, Route, expect

from tests.ui.conftest import ADMIN, Server, Shots
from tests.ui.test_security_headers import RECORD_VIOLATIONS

# Schemes that never reach a network: the pages' own data: images and ReDoc's blob: worker.
LOCAL_SCHEMES = ("data", "blob", "about")
REDOCLY_LOGO = "https://cdn.redoc.ly/redoc/logo-mini.svg"


class Offline:
    """Every request the pages make, and those refused for leaving the machine."""

    def __init__(self) -> None:
        self.requested: list[str] = []
        self.refused: list[str] = []

    def route(self, route: Route) -> None:
        url = route.request.url
        self.requested.append(url)
        parts = urlsplit(url)
        if parts.scheme in LOCAL_SCHEMES or parts.hostname == "127.0.0.1":
            route.continue_()
        else:
            self.refused.append(url)
            route.abort("internetdisconnected")


@pytest.fixture
def offline(context: BrowserContext) -> Iterator[Offline]:
    cut_off = Offline()
    context.route("**/*", cut_off.route)
    yield cut_off
    context.unroute("**/*")


def _open(page: Page, path: str) -> str:
    """The page at ``path`` under the violation recorder; its Content-Security-Policy."""
    page.add_init_script(RECORD_VIOLATIONS)
    document = page.goto(path)
    assert document is not None
    assert document.status == 200, path
    return document.headers["content-security-policy"]


def _assert_stayed_home(
    page: Page, offline: Offline, server: Server, violations: list[str] | None = None
) -> None:
    assert page.evaluate("window.__violations") == (violations or [])
    assert offline.refused == []
    assert offline.requested, "the route saw no request: the check would prove nothing"
    for url in offline.requested:
        parts = urlsplit(url)
        assert parts.scheme in LOCAL_SCHEMES or url.startswith(server.url), url


def test_swagger_ui_renders_from_the_servers_own_assets(
    page: Page, server: Server, offline: Offline, shot: Shots
) -> None:
    policy = _open(page, "/docs")
    assert "script-src 'self' 'sha256-" in policy
    assert "unsafe-inline" not in policy

    operations = page.locator(".opblock")
    expect(operations.first).to_be_visible()
    assert operations.count() > 20
    pools = page.locator(".opblock-summary-path", has_text="/api/v1/agent-pools").first
    expect(pools).to_be_visible()
    # The stylesheet applied: Swagger UI's own font, not the browser's default serif.
    font = page.evaluate("getComputedStyle(document.querySelector('.opblock')).fontFamily")
    assert "Times" not in font, font
    shot("swagger-ui-offline")

    # What the page is for: the admin pastes the token, then calls the API from the page.
    page.get_by_role("button", name="Authorize").first.click()
    admin_scheme = page.locator(".auth-container", has_text="The admin token.")
    admin_scheme.locator("input").fill(ADMIN)
    admin_scheme.get_by_role("button", name="Apply credentials").click()
    admin_scheme.get_by_role("button", name="Close").click()
    list_pools = page.locator("#operations-pools-list_pools_api_v1_agent_pools_get")
    list_pools.locator(".opblock-summary").click()
    list_pools.get_by_role("button", name="Try it out").click()
    list_pools.get_by_role("button", name="Execute").click()
    status = list_pools.locator(".live-responses-table tbody .response-col_status").first
    expect(status).to_have_text("200")
    shot("swagger-ui-called-the-api")
    _assert_stayed_home(page, offline, server)


def test_redoc_renders_from_the_servers_own_assets(
    page: Page, server: Server, offline: Offline, artifacts: Path
) -> None:
    policy = _open(page, "/redoc")
    assert "script-src 'self'" in policy
    assert "unsafe-inline" not in policy

    expect(page.get_by_role("heading", name="slotpool", level=1)).to_be_visible(timeout=20_000)
    # The operations are listed in the side menu and described in the body.
    menu_items = page.locator("[role=menuitem]")
    expect(menu_items.first).to_be_visible()
    assert menu_items.count() > 20
    expect(page.locator("h2", has_text="Create Pool").first).to_be_attached()
    # The window only: the whole page is some 40,000 pixels tall.
    page.screenshot(path=str(artifacts / "redoc-renders-from-the-servers-own-assets.png"))
    # ReDoc's side menu shows Redocly's logo from their CDN: the page's policy stops it before
    # it is a request (so the route never sees it); the only violation the page reports.
    _assert_stayed_home(page, offline, server, [f"img-src {REDOCLY_LOGO}"])
