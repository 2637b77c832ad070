"""Every other client page in a real Chromium: not yet open, cancelled, not found, an invalid rating,
and the whole rating without JavaScript; axe-core on each, screenshots kept."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from core.links import get_contact_line, issue_link, link_url, set_contact_line
from core.ratings import get_rating
from core.sync import Status
from tests.browser.conftest import LiveServer, artifacts_dir
from tests.browser.test_client_browser import PHONE, _axe
from tests.links.world import LinkWorld


def _hour() -> datetime:
    return datetime.now(UTC).replace(minute=0, second=0, microsecond=0)


def test_the_other_pages_are_accessible(live_server: LiveServer, chromium: Any) -> None:
    store = live_server.store
    world = LinkWorld(store)
    code = world.client(timezone="Europe/Madrid")
    later = world.session("later", _hour() + timedelta(days=2), code)
    gone_start = _hour() + timedelta(days=3)
    gone = world.session("gone", gone_start, code)
    set_contact_line(store, world.therapist, "Questions? Call 030 1234 567")
    world.put("gone", gone_start, status=Status.CANCELLED)
    world.sync()
    over = world.session("over", _hour() - timedelta(hours=3), code)
    urls = {
        name: link_url(live_server.base_url, issue_link(store, world.therapist, s))
        for name, s in (("later", later), ("cancelled", gone), ("over", over))
    }
    shots = artifacts_dir()
    context = chromium.new_context(**PHONE, locale="en-GB")
    page = context.new_page()
    try:
        page.goto(urls["later"])
        assert page.get_attribute("#join", "aria-disabled") == "true"
        assert "Europe/Madrid" in page.inner_text("#zone")  # the client's stored zone wins over the browser's
        page.screenshot(path=shots / "pages-not-yet-open.png", full_page=True)
        _axe(page, "not yet open")

        page.goto(urls["cancelled"])
        assert page.inner_text("h1") == "This session was cancelled"
        assert get_contact_line(store, world.therapist) == "Questions? Call 030 1234 567"
        assert "Questions? Call 030 1234 567" in page.inner_text("main")
        page.screenshot(path=shots / "pages-cancelled.png", full_page=True)
        _axe(page, "cancelled")

        answer = page.goto(urls["later"][:-3] + "xyz")
        assert answer is not None and answer.status == 404
        page.screenshot(path=shots / "pages-not-found.png", full_page=True)
        _axe(page, "not found")

        # A number the slider cannot produce, sent by hand: the page names the item, and stays accessible.
        page.goto(urls["over"])
        page.evaluate("() => { const i = document.getElementById('goals'); i.type = 'text'; i.value = '7.55'; }")
        page.get_by_role("button", name="Send").click()
        page.wait_for_selector("#form-error")
        assert "matters most to you" in page.inner_text("#form-error")
        assert page.get_attribute("#goals", "aria-invalid") == "true"
        page.screenshot(path=shots / "pages-invalid-rating.png", full_page=True)
        _axe(page, "invalid rating")
    finally:
        context.close()


def test_the_rating_works_without_javascript(live_server: LiveServer, chromium: Any) -> None:
    store = live_server.store
    world = LinkWorld(store)
    session_id = world.session("over", _hour() - timedelta(hours=3), world.client())
    url = link_url(live_server.base_url, issue_link(store, world.therapist, session_id))
    context = chromium.new_context(**PHONE, locale="es-ES", java_script_enabled=False)
    page = context.new_page()
    try:
        page.goto(url)
        assert page.get_attribute("html", "lang") == "es"
        page.focus("#bond")
        for _ in range(20):
            page.keyboard.press("ArrowRight")  # 7.0: a plain range input needs no script
        page.get_by_role("button", name="Enviar").click()
        page.wait_for_selector("h1:text('Gracias')")
        page.screenshot(path=artifacts_dir() / "pages-no-javascript-thanks.png", full_page=True)
    finally:
        context.close()
    rating = get_rating(store, session_id)
    assert rating is not None and (rating.bond, rating.goals, rating.total) == (7.0, 5.0, 22.0)


def test_the_join_button_appears_by_itself_when_it_opens(live_server: LiveServer, chromium: Any) -> None:
    store = live_server.store
    world = LinkWorld(store)
    # Join opens 15 minutes before the start: here, a few seconds after the page is loaded.
    start = datetime.now(UTC).replace(microsecond=0) + timedelta(minutes=15, seconds=10)
    session_id = world.session("soon", start, world.client())
    url = link_url(live_server.base_url, issue_link(store, world.therapist, session_id))
    context = chromium.new_context(**PHONE, locale="en-US")
    page = context.new_page()
    try:
        page.goto(url)
        assert page.get_attribute("#join", "aria-disabled") == "true"
        page.wait_for_selector("a#join", timeout=30_000)  # the page reloaded itself; the server opened Join
        assert page.get_attribute("a#join", "href") == f"/c/{url.rsplit('/', 1)[1]}/join"
    finally:
        context.close()
