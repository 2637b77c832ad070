"""The client's link in Chromium on a phone: an in-person session (no device check or Join), a
client whose stored language is Spanish in an English browser (switchable), and declining the
rating with the keyboard. axe-core on every page; screenshots kept."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from core.alerts import RatingState
from core.client_trends import client_trend
from core.clients import create_client
from core.links import issue_link, link_url
from core.ratings import get_rating
from tests.browser.conftest import LiveServer, artifacts_dir
from tests.browser.test_client_browser import PHONE, _axe
from tests.links.world import LinkWorld


def _hour() -> datetime:
    return datetime.now(UTC).replace(minute=0, second=0, microsecond=0)


def test_in_person_spanish_by_default_and_a_declined_rating(live_server: LiveServer, chromium: Any) -> None:
    store = live_server.store
    world = LinkWorld(store)
    code = create_client(
        store, world.therapist, name="Lucía Example", timezone="Europe/Madrid", modality="in_person", language="es"
    ).code
    ahead = world.session("ahead", _hour() + timedelta(minutes=65), code)  # Join would open in 50 minutes
    over = world.session("over", _hour() - timedelta(hours=3), code)
    urls = {s: link_url(live_server.base_url, issue_link(store, world.therapist, s)) for s in (ahead, over)}
    shots = artifacts_dir()
    context = chromium.new_context(**PHONE, locale="en-US", timezone_id="Europe/Madrid")
    page = context.new_page()
    try:
        page.goto(urls[ahead])
        assert page.get_attribute("html", "lang") == "es"  # the client's language, not the browser's
        assert page.locator("#in-person").is_visible()
        assert page.locator("#join").count() == 0 and page.locator("#device-check").count() == 0
        assert page.locator("#checklist").count() == 0
        page.screenshot(path=str(shots / "client-in-person-es.png"), full_page=True)
        _axe(page, "in person, Spanish")
        page.get_by_role("link", name="English").click()
        page.wait_for_url("**?lang=en")
        assert page.get_attribute("html", "lang") == "en" and page.locator("#in-person").is_visible()

        page.goto(urls[over])  # the cookie keeps English now
        assert page.locator("#rating").is_visible()
        decline = page.get_by_role("button", name="I'd rather not answer this time")
        decline.focus()
        page.keyboard.press("Enter")
        page.wait_for_selector("text=You chose not to answer")
        page.screenshot(path=str(shots / "client-declined.png"), full_page=True)
        _axe(page, "declined")
    finally:
        context.close()
    assert get_rating(store, over) is None
    trend = client_trend(store, world.therapist, code)
    assert {r.record.session_id: r.record.rating for r in trend.rows}[over] is RatingState.DECLINED
    assert [f.rule for f in trend.flags] == ["R6"]
