"""A client on a phone, in a real Chromium against a real server: checklist, device check, Join, rating.

Each run: open the link (English or Spanish browser), tick the checklist and confirm today's place
and number, check camera, microphone and connection (Chromium's fake devices), press Join, then
the video platform reports the end of the call and the same link asks for the rating, given with
the keyboard or with the mouse. axe-core checks every page; screenshots are kept.

Join answers with a redirect to the video link; Playwright's request routing does not see requests
that follow a redirect, and the video platform cannot be reached here, so the test observes the
browser's navigation request to the video URL rather than a loaded page.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from axe_playwright_python.sync_playwright import Axe

from core.links import CLIENT_CHECKLIST, get_checkin, issue_link, join_clicks, link_url
from core.ratings import get_rating, read_comment, record_session_end
from tests.browser.conftest import LiveServer, artifacts_dir
from tests.links.world import ZOOM, LinkWorld

PHONE = {"viewport": {"width": 390, "height": 844}, "is_mobile": True, "has_touch": True}
TEXT = {
    "en": {"save": "Save", "saved": "Saved", "rate": "How was today's session?", "send": "Send", "thanks": "Thank you"},
    "es": {
        "save": "Guardar",
        "saved": "Guardado",
        "rate": "¿Qué tal la sesión de hoy?",
        "send": "Enviar",
        "thanks": "Gracias",
    },
}
BLOCKING = ("serious", "critical")


def _axe(page: Any, name: str) -> None:
    """No serious or critical accessibility violation on the page as it is now."""
    results = Axe().run(page)
    bad = [
        f"{v['id']} ({v['impact']}): {[n['target'] for n in v['nodes']][:3]}"
        for v in results.response["violations"]
        if v.get("impact") in BLOCKING
    ]
    assert bad == [], f"{name}: {bad}"


@pytest.fixture
def phone(chromium: Any, request: pytest.FixtureRequest) -> Iterator[Any]:
    lang = request.node.callspec.params["lang"]
    context = chromium.new_context(**PHONE, locale="es-ES" if lang == "es" else "en-US", timezone_id="America/Bogota")
    page = context.new_page()
    yield page
    context.close()


@pytest.mark.parametrize("mode", ["keyboard", "mouse"])
@pytest.mark.parametrize("lang", ["en", "es"])
def test_a_client_prepares_joins_and_rates_on_a_phone(
    live_server: LiveServer, phone: Any, lang: str, mode: str
) -> None:
    store = live_server.store
    world = LinkWorld(store)
    code = world.client()  # no zone stored: the page shows the browser's zone
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=14)  # under way: Join is open
    session_id = world.session("evt-1", start, code)
    url = link_url(live_server.base_url, issue_link(store, world.therapist, session_id))
    shots = artifacts_dir()
    words = TEXT[lang]
    page = phone

    page.goto(url)
    assert page.get_attribute("html", "lang") == lang
    assert "America/Bogota" in page.inner_text("#zone")  # the browser's zone, named
    page.screenshot(path=shots / f"{lang}-{mode}-1-before.png", full_page=True)
    _axe(page, "before the session")

    # The checklist, ticked by tapping each item's label, and today's place and number.
    for key in CLIENT_CHECKLIST:
        page.click(f"label[for=c-{key}]")
    page.fill("#location", "Calle Mayor 12, Zaragoza")
    page.fill("#callback", "+34 600 111 222")
    page.get_by_role("button", name=words["save"]).click()
    page.wait_for_selector("p.ok")
    assert words["saved"] in page.inner_text("p.ok")
    checkin = get_checkin(store, world.therapist, session_id)
    assert checkin is not None and checkin.checked == CLIENT_CHECKLIST and checkin.callback == "+34 600 111 222"

    # The device check: camera and microphone (fake devices), the level meter moves, the connection.
    page.click("#check-media")
    page.wait_for_selector("#device-check[data-media=ok]")
    page.wait_for_function("() => parseFloat(document.getElementById('device-check').dataset.level || '0') > 0.01")
    page.click("#check-net")
    page.wait_for_selector("#device-check[data-net]")
    assert page.get_attribute("#device-check", "data-net") == "good"
    page.screenshot(path=shots / f"{lang}-{mode}-2-device-check.png", full_page=True)
    _axe(page, "device check")

    # Join: the browser navigates to the video link (which cannot resolve on a test machine: the
    # navigation request is what is observed); the press is recorded.
    with page.expect_request(lambda r: r.url == ZOOM and r.is_navigation_request()) as navigation:
        page.click("#join")
    assert navigation.value.frame == page.main_frame
    assert len(join_clicks(store, world.therapist, session_id)) == 1

    # The call ends (the video platform reports it, as the Zoom integration will): the rating opens.
    record_session_end(store, session_id, started_at=start, ended_at=datetime.now(UTC) - timedelta(seconds=1))
    page.goto(url)
    assert page.inner_text("h1") == words["rate"]
    page.screenshot(path=shots / f"{lang}-{mode}-3-rating.png", full_page=True)
    _axe(page, "rating form")

    expected = _rate_with_keyboard(page) if mode == "keyboard" else _rate_with_mouse(page, words["send"])
    page.wait_for_selector(f"h1:text('{words['thanks']}')")
    page.screenshot(path=shots / f"{lang}-{mode}-4-thanks.png", full_page=True)
    _axe(page, "thanks")

    rating = get_rating(store, session_id)
    assert rating is not None
    got = {"bond": rating.bond, "goals": rating.goals, "approach": rating.approach, "overall": rating.overall}
    assert got == expected
    assert rating.total == pytest.approx(sum(expected.values()))
    assert read_comment(store, rating) == ("typed" if mode == "keyboard" else None)


def _rate_with_keyboard(page: Any) -> dict[str, float]:
    """Arrow keys step by 0.1 from the starting 5.0; Tab moves on; Enter on Send submits."""
    page.focus("#bond")
    for _ in range(30):
        page.keyboard.press("ArrowRight")  # 8.0
    page.keyboard.press("Tab")
    for _ in range(12):
        page.keyboard.press("ArrowLeft")  # 3.8
    page.keyboard.press("Tab")
    page.keyboard.press("End")  # 10.0
    page.keyboard.press("Tab")
    page.keyboard.press("Home")  # 0.0
    for _ in range(65):
        page.keyboard.press("ArrowRight")  # 6.5
    assert page.inner_text("#overall-value") == "6.5"
    page.keyboard.press("Tab")
    page.keyboard.type("typed")
    page.keyboard.press("Tab")
    page.keyboard.press("Enter")
    return {"bond": 8.0, "goals": 3.8, "approach": 10.0, "overall": 6.5}


def _rate_with_mouse(page: Any, send: str) -> dict[str, float]:
    """A tap on each line where the client means it; the value is what the slider shows."""
    chosen: dict[str, float] = {}
    for key, fraction in (("bond", 0.9), ("goals", 0.75), ("approach", 0.6), ("overall", 0.85)):
        slider = page.locator(f"#{key}")
        slider.scroll_into_view_if_needed()
        box = slider.bounding_box()
        page.mouse.click(box["x"] + box["width"] * fraction, box["y"] + box["height"] / 2)
        value = float(page.input_value(f"#{key}"))
        assert abs(value - fraction * 10) <= 0.6, (key, value)
        assert page.inner_text(f"#{key}-value") == f"{value:.1f}"
        chosen[key] = value
    page.get_by_role("button", name=send).click()
    return chosen
