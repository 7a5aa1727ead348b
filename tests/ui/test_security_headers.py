"""The UI under its Content-Security-Policy: the pages load and work in Chromium, and the browser
reports no violation (a policy too strict for the build would block a script or a style)."""

from __future__ import annotations

from playwright.sync_api import Page, expect

from tests.ui.conftest import Server, Shots, sign_in

# Every violation the browser reports on the page, kept where the test can read it.
RECORD_VIOLATIONS = """
window.__violations = [];
document.addEventListener("securitypolicyviolation", (e) => {
  window.__violations.push(`${e.violatedDirective} ${e.blockedURI}`);
});
"""


def test_the_ui_loads_and_works_under_its_security_policy(
    page: Page, server: Server, shot: Shots
) -> None:
    pool_id = server.create_pool("ui-csp", min_replicas=0, max_replicas=1)
    page.add_init_script(RECORD_VIOLATIONS)
    console_errors: list[str] = []
    page.on("console", lambda m: console_errors.append(m.text) if m.type == "error" else None)

    document = page.goto("/")
    assert document is not None
    headers = document.headers
    assert "script-src 'self'" in headers["content-security-policy"]
    assert "frame-ancestors 'none'" in headers["content-security-policy"]
    assert headers["x-frame-options"] == "DENY"
    assert headers["x-content-type-options"] == "nosniff"

    sign_in(page)
    page.goto(f"/pools/{pool_id}")
    expect(page.get_by_role("heading", name="ui-csp")).to_be_visible()
    page.get_by_role("link", name="Configuration").click()
    expect(page.get_by_role("link", name="Configuration")).to_have_attribute("aria-current", "page")
    shot("configuration-under-csp")

    # The stylesheet applied (a blocked one would leave the page unstyled).
    font = page.evaluate("getComputedStyle(document.body).fontFamily")
    assert "Times" not in font, font
    assert page.evaluate("window.__violations") == []
    assert not [e for e in console_errors if "Content Security Policy" in e], console_errors
