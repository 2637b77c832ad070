"""The therapist's ratings page in Chromium: the inline chart is drawn with its own style (allowed by the
page's CSP hash, no violation reported), the page passes axe-core, and a screenshot is kept."""

from __future__ import annotations

from typing import Any

from core.accounts import create_therapist, set_password
from tests.browser.conftest import LiveServer, artifacts_dir
from tests.browser.test_client_browser import _axe
from tests.portal.conftest import PASSWORD
from tests.trends.world import Course


def test_the_ratings_page_draws_the_styled_chart_and_is_accessible(live_server: LiveServer, chromium: Any) -> None:
    therapist = create_therapist(live_server.store, "ana@example.org", display_name="Ana")
    set_password(live_server.store, therapist, PASSWORD)
    course = Course(live_server.store, "ana@example.org")
    context = chromium.new_context(viewport={"width": 1100, "height": 900})
    page = context.new_page()
    violations: list[str] = []
    page.on("console", lambda m: violations.append(m.text) if "Content Security Policy" in m.text else None)
    try:
        page.goto(f"{live_server.base_url}/login")
        page.fill("input[name=email]", "ana@example.org")
        page.fill("input[name=password]", PASSWORD)
        page.click("button[type=submit]")
        page.wait_for_url(f"{live_server.base_url}/")
        page.goto(f"{live_server.base_url}/clients/{course.code}/ratings")
        assert page.locator("h1").inner_text() == "Alliance ratings"
        # pygal's stylesheet applied: a series line is not filled (an unstyled path would be black-filled).
        fill = page.eval_on_selector("svg .plot .series path.line", "el => getComputedStyle(el).fill")
        assert fill == "none", fill
        assert violations == []
        assert page.locator("table caption").count() == 1
        assert page.locator(".rating-flag").count() == 5
        page.screenshot(path=str(artifacts_dir() / "ratings-view.png"), full_page=True)
        _axe(page, "ratings view")
    finally:
        context.close()
