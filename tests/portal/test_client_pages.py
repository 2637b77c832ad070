"""The client's pages over HTTP (the real app on both databases): before, join, check-in, rating, errors.

Sessions are placed relative to the current time (hours away from any boundary), so what a page
shows depends on the phase, never on how fast the test runs.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from babel.dates import format_time
from fastapi import FastAPI

from alliance.settings import Settings
from core.links import get_checkin, issue_link, join_clicks, revoke_link, set_contact_line
from core.ratings import get_rating, load_licensed_measure
from core.store import Store
from core.sync import Status
from tests.links.test_ratings import MEASURE
from tests.links.world import ZOOM, LinkWorld
from tests.portal.conftest import asgi_client

pytestmark = pytest.mark.anyio
HTML = {"accept": "text/html"}
GOOD = {"bond": "9.5", "goals": "8", "approach": "7.3", "overall": "10"}


def _hour() -> datetime:
    return datetime.now(UTC).replace(minute=0, second=0, microsecond=0)


class Pages:
    def __init__(self, store: Store) -> None:
        self.store = store
        self.world = LinkWorld(store)
        self.code = self.world.client(timezone="America/Mexico_City")
        self.n = 0

    def link(self, start: datetime, **fields: object) -> tuple[int, str]:
        self.n += 1
        session_id = self.world.session(f"evt-{self.n}", start, self.code, **fields)
        return session_id, issue_link(self.store, self.world.therapist, session_id)


@pytest.fixture
def pages(store: Store) -> Pages:
    return Pages(store)


async def test_before_the_session_the_time_is_in_the_clients_zone_with_the_checklist(
    client: httpx.AsyncClient, pages: Pages
) -> None:
    start = _hour() + timedelta(days=2)
    _sid, token = pages.link(start)
    page = await client.get(f"/c/{token}", headers=HTML)
    assert page.status_code == 200
    local = format_time(start.astimezone(__import__("zoneinfo").ZoneInfo("America/Mexico_City")), "short", locale="en")
    assert local in page.text and "America/Mexico_City" in page.text
    assert 'data-zone-fixed="yes"' in page.text
    for item in ("headphones", "not driving", "charged", "Notifications", "camera", "phone is nearby", "record"):
        assert item in page.text
    # Join is not open yet (two days ahead): no link to the video, the opening time instead.
    assert f"/c/{token}/join" not in page.text and 'aria-disabled="true"' in page.text
    assert ZOOM not in page.text  # the video link is never in the page, only behind /join
    joined = await client.get(f"/c/{token}/join")
    assert joined.status_code == 303 and joined.headers["location"] == f"/c/{token}"
    assert join_clicks(pages.store, pages.world.therapist, _sid) == []


async def test_join_opens_before_the_start_records_the_press_and_goes_to_the_video(
    client: httpx.AsyncClient, pages: Pages
) -> None:
    session_id, token = pages.link(datetime.now(UTC) + timedelta(minutes=5))
    page = await client.get(f"/c/{token}", headers=HTML)
    assert f'href="/c/{token}/join"' in page.text
    joined = await client.get(f"/c/{token}/join")
    assert joined.status_code == 303 and joined.headers["location"] == ZOOM
    assert joined.headers["referrer-policy"] == "no-referrer"  # the token never reaches the video platform
    assert len(join_clicks(pages.store, pages.world.therapist, session_id)) == 1


async def test_the_check_in_is_saved_for_the_therapist_and_bad_input_is_named(
    client: httpx.AsyncClient, pages: Pages
) -> None:
    session_id, token = pages.link(_hour() + timedelta(days=1))
    form = {"checked": ["C1", "C3"], "location": "Calle Mayor 12", "callback": "+34 600 111 222"}
    saved = await client.post(f"/c/{token}/checkin", data=form)
    assert saved.status_code == 303 and saved.headers["location"].startswith(f"/c/{token}?saved=1")
    view = get_checkin(pages.store, pages.world.therapist, session_id)
    assert view is not None and view.location == "Calle Mayor 12" and view.checked == ("C1", "C3")
    again = await client.get(saved.headers["location"], headers=HTML)
    assert "Saved" in again.text and 'value="C1" checked' in again.text
    assert "Calle Mayor" not in again.text  # never shown back to the client's device
    bad = await client.post(f"/c/{token}/checkin", data={**form, "callback": "call me maybe"}, headers=HTML)
    assert bad.status_code == 422 and "phone number" in bad.text and 'id="callback"' in bad.text


async def test_a_rating_before_the_end_is_refused_kindly(client: httpx.AsyncClient, pages: Pages) -> None:
    session_id, token = pages.link(_hour() + timedelta(hours=3))
    refused = await client.post(f"/c/{token}/rating", data=GOOD, headers=HTML)
    assert refused.status_code == 409 and "after your session has ended" in refused.text
    assert get_rating(pages.store, session_id) is None


async def test_after_the_session_the_link_is_the_rating_and_the_first_one_stands(
    client: httpx.AsyncClient, pages: Pages
) -> None:
    session_id, token = pages.link(_hour() - timedelta(hours=3))
    form = await client.get(f"/c/{token}", headers=HTML)
    assert form.status_code == 200
    # Plain range inputs in a form post: works without JavaScript.
    for item in GOOD:
        assert re.search(rf'<input type="range" id="{item}" name="{item}" min="0" max="10" step="0.1"', form.text)
    assert "SRS" not in form.text and "Session Rating Scale" not in form.text  # our own wording, not the licensed one
    bad = await client.post(f"/c/{token}/rating", data={**GOOD, "approach": "10.55"}, headers=HTML)
    assert bad.status_code == 422 and "way of working suit you" in bad.text and 'value="9.5"' in bad.text
    assert re.search(r'id="approach"[^>]*aria-invalid="true"', bad.text)
    problem = await client.post(
        f"/c/{token}/rating", data={**GOOD, "bond": "11"}, headers={"accept": "application/json"}
    )
    assert problem.status_code == 422 and problem.json()["errors"][0]["name"] == "bond"
    assert get_rating(pages.store, session_id) is None

    sent = await client.post(f"/c/{token}/rating", data={**GOOD, "comment": "Good"}, headers=HTML)
    assert sent.status_code == 303
    thanks = await client.get(f"/c/{token}", headers=HTML)
    assert "received" in thanks.text
    second = await client.post(f"/c/{token}/rating", data={k: "0" for k in GOOD}, headers=HTML)
    assert second.status_code == 200 and "received" in second.text
    rating = get_rating(pages.store, session_id)
    assert rating is not None and rating.total == pytest.approx(34.8)  # computed on the server; first stands


async def test_a_cancelled_session_says_so_with_the_contact_line(client: httpx.AsyncClient, pages: Pages) -> None:
    start = _hour() + timedelta(days=1)
    _sid, token = pages.link(start)
    set_contact_line(pages.store, pages.world.therapist, "Questions? Call 030 1234 567")
    pages.world.put(f"evt-{pages.n}", start, status=Status.CANCELLED)
    pages.world.sync()
    page = await client.get(f"/c/{token}", headers=HTML)
    assert "This session was cancelled" in page.text and "Call 030 1234 567" in page.text


async def test_every_bad_token_gets_the_same_404_and_repeated_failures_429(
    app: FastAPI, client: httpx.AsyncClient, pages: Pages, store: Store
) -> None:
    _s1, revoked = pages.link(_hour() + timedelta(days=1))
    revoke_link(store, pages.world.therapist, _s1)
    _s2, expired = pages.link(_hour() - timedelta(days=9))
    _s3, live = pages.link(_hour() + timedelta(days=1))
    tampered = live[:-2] + ("AA" if live[-2:] != "AA" else "BB")
    bodies = set()
    for token in (revoked, expired, tampered, "unknown-token-0123456789abcdef"):
        answer = await client.get(f"/c/{token}", headers=HTML)
        assert answer.status_code == 404
        bodies.add(answer.text)
    assert len(bodies) == 1  # no hint which kind of bad token it was
    settings: Settings = app.state.settings
    for _ in range(settings.link_failures_per_minute):
        await client.get("/c/unknown-token-0123456789abcdef", headers=HTML)
    blocked = await client.get(f"/c/{live}", headers=HTML)
    assert blocked.status_code == 429 and blocked.headers["retry-after"] == "60"
    async with asgi_client(app, address="10.0.0.7") as elsewhere:
        assert (await elsewhere.get(f"/c/{live}", headers=HTML)).status_code == 200


async def test_spanish_from_the_browser_switchable_and_remembered(client: httpx.AsyncClient, pages: Pages) -> None:
    _sid, token = pages.link(_hour() + timedelta(days=1))
    spanish = await client.get(f"/c/{token}", headers={**HTML, "accept-language": "es-MX,es;q=0.9,en;q=0.5"})
    assert '<html lang="es">' in spanish.text and "Antes de empezar" in spanish.text
    switched = await client.get(f"/c/{token}?lang=en", headers={**HTML, "accept-language": "es"})
    assert '<html lang="en">' in switched.text and "Before you start" in switched.text
    remembered = await client.get(f"/c/{token}", headers={**HTML, "accept-language": "es"})
    assert '<html lang="en">' in remembered.text  # the switch is kept in a cookie


async def test_a_licensed_measure_names_the_form_and_shows_its_copyright(
    client: httpx.AsyncClient, pages: Pages, tmp_path: Path
) -> None:
    path = tmp_path / "srs.toml"
    path.write_text(MEASURE)
    load_licensed_measure(pages.store, path, attest_license=True)
    session_id, token = pages.link(_hour() - timedelta(hours=3))
    form = await client.get(f"/c/{token}", headers=HTML)
    assert "Session Rating Scale (SRS)" in form.text and "LICENSED bond prompt" in form.text
    assert "(c) Licensed text" in form.text
    await client.post(f"/c/{token}/rating", data=GOOD, headers=HTML)
    rating = get_rating(pages.store, session_id)
    assert rating is not None and rating.measure == "srs"


async def test_the_connection_check_endpoint(client: httpx.AsyncClient, pages: Pages) -> None:
    _sid, token = pages.link(_hour() + timedelta(days=1))
    small = await client.get(f"/c/{token}/ping")
    big = await client.get(f"/c/{token}/ping?size=64k")
    assert small.status_code == big.status_code == 200
    assert (len(small.content), len(big.content)) == (0, 64 * 1024)
    assert big.headers["cache-control"] == "no-store"
    assert (await client.get("/c/unknown-token-0123456789abcdef/ping")).status_code == 404


async def test_no_token_place_or_number_reaches_the_logs(
    client: httpx.AsyncClient, pages: Pages, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("DEBUG")
    session_id, token = pages.link(datetime.now(UTC) + timedelta(minutes=5))
    await client.get(f"/c/{token}", headers=HTML)
    await client.post(f"/c/{token}/checkin", data={"location": "Calle Mayor 12", "callback": "+34 600 111 222"})
    await client.get(f"/c/{token}/join")
    await client.get(f"/c/{token}x", headers=HTML)
    # The server's records (the test's own HTTP client logs its URLs under httpx).
    text = "\n".join(r.getMessage() for r in caplog.records if not r.name.startswith(("httpx", "httpcore")))
    assert f"session {session_id}" in text  # the events are logged, by session id
    for secret in (token, "Calle Mayor", "600 111 222", ZOOM, "Anna"):
        assert secret not in text
