"""The therapist's pages in Chromium: a session's checklists (fill, skip with a reason, the flagged
location item S2) and the client list. Real server, real login; axe-core on every page; screenshots."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from core.accounts import create_therapist, set_password
from core.checklists import AnswerStatus, Phase, session_checklists
from core.store import Store
from core.sync import Status
from tests.browser.conftest import LiveServer, artifacts_dir
from tests.browser.test_client_browser import _axe
from tests.links.world import LinkWorld
from tests.portal.conftest import PASSWORD
from tests.trends.world import Course

EMAIL = "ana@example.org"


def _therapist(store: Store) -> int:
    therapist_id = create_therapist(store, EMAIL, display_name="Ana")
    set_password(store, therapist_id, PASSWORD)
    return therapist_id


def _login(live_server: LiveServer, chromium: Any, **context_args: Any) -> tuple[Any, Any]:
    context = chromium.new_context(**context_args)
    page = context.new_page()
    page.goto(f"{live_server.base_url}/login")
    page.fill("input[name=email]", EMAIL)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{live_server.base_url}/")
    return context, page


def _answers(store: Store, therapist_id: int, session_id: int, phase: Phase) -> dict[str, tuple[str, str | None]]:
    run = session_checklists(store, therapist_id, session_id).run(phase)
    return {
        s.item.key: (s.answer.status.value, s.answer.reason or s.answer.text) for s in run.items if s.answer is not None
    }


def test_a_therapist_fills_and_skips_checklist_items_and_clears_the_location_flag(
    live_server: LiveServer, chromium: Any
) -> None:
    store = live_server.store
    therapist_id = _therapist(store)
    world = LinkWorld(store, EMAIL)
    code = world.client(timezone="Europe/Madrid")
    start = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) + timedelta(days=1)
    session_id = world.session("online", start, code)  # online: the event has a video link
    shots = artifacts_dir()
    context, page = _login(live_server, chromium, viewport={"width": 1000, "height": 900})
    try:
        page.goto(f"{live_server.base_url}/sessions/{session_id}/checklists")
        assert page.locator("h1").inner_text() == "Session checklists"
        # The location item is flagged until it is done, with a link to it.
        flags = page.locator(".flags")
        assert "S2" in flags.inner_text()
        _axe(page, "checklists, flagged")

        # Before the session: T1 done, T3 skipped with a reason (typed with the keyboard).
        pre = page.locator("#list-pre")
        pre.locator("#item-T1 input[value=done]").check()
        pre.locator("#item-T3 input[value=skipped]").check()
        pre.locator("#item-T3 input[name='reason.T3']").fill("on the practice network today")
        pre.get_by_role("button", name="Save “Before the session”").click()
        page.wait_for_url(f"**/sessions/{session_id}/checklists?saved=pre*")
        assert "Before the session: saved." in page.locator(".notice").first.inner_text()
        assert page.locator("#list-pre #item-T1 input[value=done]").is_checked()
        assert (
            page.locator("#list-pre #item-T3 input[name='reason.T3']").input_value() == "on the practice network today"
        )
        assert _answers(store, therapist_id, session_id, Phase.PRE) == {
            "T1": ("done", None),
            "T3": ("skipped", "on the practice network today"),
        }

        # S2 done without the place: refused, the list says why, nothing is stored.
        start_list = page.locator("#list-start")
        start_list.locator("#item-S2 input[value=done]").check()
        start_list.get_by_role("button", name="Save “At the start of the session”").click()
        page.wait_for_selector("#error-start")
        assert "S2" in page.locator("#error-start").inner_text()
        _axe(page, "checklists, invalid")
        assert "S2" not in _answers(store, therapist_id, session_id, Phase.START)

        # S2 skipped with a reason: stored, but the flag stays (the item has to be done).
        page.goto(f"{live_server.base_url}/sessions/{session_id}/checklists")
        start_list = page.locator("#list-start")
        start_list.locator("#item-S2 input[value=skipped]").check()
        start_list.locator("#item-S2 input[name='reason.S2']").fill("client not connected yet")
        start_list.get_by_role("button", name="Save “At the start of the session”").click()
        page.wait_for_url(f"**/sessions/{session_id}/checklists?saved=start*")
        assert "has to be done" in page.locator(".flags").inner_text()

        # S2 done with today's place and number: the flag is gone.
        start_list = page.locator("#list-start")
        start_list.locator("#item-S2 input[value=done]").check()
        start_list.locator("#item-S2 input[name='text.S2']").fill("Home; +34 600 000 000")
        start_list.locator("#item-S1 input[value=done]").check()
        start_list.get_by_role("button", name="Save “At the start of the session”").click()
        page.wait_for_url(f"**/sessions/{session_id}/checklists?saved=start*")
        assert page.locator(".flags").count() == 0
        answers = _answers(store, therapist_id, session_id, Phase.START)
        assert answers["S2"] == ("done", "Home; +34 600 000 000") and answers["S1"][0] == AnswerStatus.DONE.value
        page.screenshot(path=str(shots / "therapist-checklists.png"), full_page=True)
        _axe(page, "checklists, done")
    finally:
        context.close()


def test_the_client_list_leads_to_ratings_and_the_next_session(live_server: LiveServer, chromium: Any) -> None:
    store = live_server.store
    _therapist(store)
    course = Course(store, EMAIL)
    other = Course(store, "someone.else@alliance.test")
    context, page = _login(live_server, chromium, viewport={"width": 390, "height": 844}, is_mobile=True)
    try:
        page.get_by_role("link", name="Your clients").click()
        page.wait_for_url(f"{live_server.base_url}/clients")
        table = page.locator("#clients")
        assert table.locator("caption").inner_text() == "Your active clients by code"
        rows = table.locator("tbody tr")
        assert rows.count() == 1 and other.code not in page.inner_text("main")
        row = rows.first
        assert row.locator("th").inner_text() == course.code
        assert "down 3.0" in row.inner_text() and "R7" in row.inner_text()
        page.screenshot(path=str(artifacts_dir() / "therapist-client-list.png"), full_page=True)
        _axe(page, "client list")

        row.get_by_role("link", name=f"Client {course.code}: ratings").click()
        page.wait_for_url(f"**/clients/{course.code}/ratings")
        assert page.locator("h1").inner_text() == "Alliance ratings"
        page.go_back()
        page.locator(f"#client-{course.code} td a").first.click()
        page.wait_for_url(f"**/sessions/{course.s6}/checklists")
        assert page.locator("h1").inner_text() == "Session checklists"
    finally:
        context.close()


def test_the_therapist_says_who_cancelled_and_the_ratings_page_flags_r8(live_server: LiveServer, chromium: Any) -> None:
    store = live_server.store
    _therapist(store)
    course = Course(store, EMAIL)
    now = course.now
    c7 = course.world.session("c7", now + timedelta(weeks=2), course.code, status=Status.CANCELLED)
    c8 = course.world.session("c8", now + timedelta(weeks=3), course.code, status=Status.CANCELLED)
    context, page = _login(live_server, chromium, viewport={"width": 1000, "height": 900})
    try:
        for session_id, late in ((c7, True), (c8, False)):
            page.goto(f"{live_server.base_url}/sessions/{session_id}/checklists")
            form = page.locator("#cancellation")
            form.get_by_label("The client").check()
            if late:
                form.get_by_label("At short notice (client only)").check()
            form.get_by_role("button", name="Save who cancelled").click()
            page.wait_for_url(f"**/sessions/{session_id}/checklists?saved=cancellation*")
            assert page.locator("#cancellation").get_by_label("The client").is_checked()
            assert page.locator("#cancellation").get_by_label("At short notice (client only)").is_checked() is late
        _axe(page, "cancelled session's checklists")
        page.goto(f"{live_server.base_url}/clients/{course.code}/ratings")
        r8 = page.locator(".rating-flag", has_text="R8")
        assert r8.count() == 1
        table = page.locator("table").inner_text()
        assert "cancelled late by the client" in table and "cancelled by the client" in table
    finally:
        context.close()
