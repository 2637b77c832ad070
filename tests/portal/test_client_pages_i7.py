"""The client's page for in-person sessions, in the client's own language, and a declined rating
(the real app over HTTP on both databases; times hours away from every boundary)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import pytest

from core.alerts import RatingState
from core.client_trends import client_trend
from core.clients import create_client, set_session_modality, update_client
from core.links import issue_link
from core.ratings import get_rating
from core.store import Store
from tests.links.world import ZOOM, LinkWorld

pytestmark = pytest.mark.anyio
HTML = {"accept": "text/html"}
GOOD = {"bond": "9.5", "goals": "8", "approach": "7.3", "overall": "10"}


def _hour() -> datetime:
    return datetime.now(UTC).replace(minute=0, second=0, microsecond=0)


class Links:
    def __init__(self, store: Store) -> None:
        self.store = store
        self.world = LinkWorld(store)
        self.n = 0

    def client(self, **details: str) -> str:
        return create_client(self.store, self.world.therapist, name="Ana Example", **details).code

    def link(self, code: str, start: datetime, **fields: object) -> tuple[int, str]:
        self.n += 1
        session_id = self.world.session(f"evt-{self.n}", start, code, **fields)
        return session_id, issue_link(self.store, self.world.therapist, session_id)


@pytest.fixture
def links(store: Store) -> Links:
    return Links(store)


async def test_an_in_person_session_shows_the_time_without_device_check_join_or_online_checklist(
    client: httpx.AsyncClient, links: Links
) -> None:
    code = links.client(modality="in_person")
    session_id, token = links.link(code, datetime.now(UTC) + timedelta(minutes=5))  # Join would be open
    page = await client.get(f"/c/{token}", headers=HTML)
    assert page.status_code == 200 and 'id="in-person"' in page.text
    for online in ('id="join"', 'id="device-check"', 'id="checklist"', "headphones", "/static/client.js"):
        assert online not in page.text, online
    joined = await client.get(f"/c/{token}/join")
    assert joined.headers["location"] != ZOOM  # the event's video link is not for this session

    # The same session switched to online gets everything back.
    set_session_modality(links.store, links.world.therapist, session_id, "online")
    page = await client.get(f"/c/{token}", headers=HTML)
    assert 'id="in-person"' not in page.text and 'id="device-check"' in page.text and "headphones" in page.text


async def test_after_an_in_person_session_the_link_is_the_rating(client: httpx.AsyncClient, links: Links) -> None:
    code = links.client(modality="in_person")
    session_id, token = links.link(code, _hour() - timedelta(hours=3), video=None)
    form = await client.get(f"/c/{token}", headers=HTML)
    assert 'id="rating"' in form.text
    assert (await client.post(f"/c/{token}/rating", data=GOOD)).status_code == 303
    assert get_rating(links.store, session_id) is not None


async def test_the_clients_language_is_the_default_and_the_browser_can_still_switch(
    client: httpx.AsyncClient, links: Links
) -> None:
    code = links.client(language="es")
    _sid, token = links.link(code, _hour() + timedelta(days=2))
    english_browser = {**HTML, "accept-language": "en-GB,en;q=0.9"}
    page = await client.get(f"/c/{token}", headers=english_browser)
    assert '<html lang="es">' in page.text and "Tu próxima sesión" in page.text
    switched = await client.get(f"/c/{token}?lang=en", headers=english_browser)
    assert '<html lang="en">' in switched.text and "Your next session" in switched.text
    # The choice is remembered (cookie) over the client's stored language.
    again = await client.get(f"/c/{token}", headers=english_browser)
    assert '<html lang="en">' in again.text
    client.cookies.clear()
    # Without a stored language the browser decides, as before.
    update_client(links.store, links.world.therapist, code, language=None)
    plain = await client.get(f"/c/{token}", headers=english_browser)
    assert '<html lang="en">' in plain.text


async def test_a_declined_rating_is_recorded_once_and_feeds_rule_r6(client: httpx.AsyncClient, links: Links) -> None:
    code = links.client()
    session_id, token = links.link(code, _hour() - timedelta(hours=3))
    form = await client.get(f"/c/{token}", headers=HTML)
    assert f'action="/c/{token}/decline"' in form.text
    declined = await client.post(f"/c/{token}/decline")
    assert declined.status_code == 303
    page = await client.get(f"/c/{token}", headers=HTML)
    assert "You chose not to answer" in page.text and 'id="rating"' not in page.text
    # A rating posted afterwards does not overwrite the answer the client gave.
    late = await client.post(f"/c/{token}/rating", data=GOOD, headers=HTML)
    assert "You chose not to answer" in late.text and get_rating(links.store, session_id) is None
    assert (await client.post(f"/c/{token}/decline")).status_code == 303  # twice: nothing changes

    trend = client_trend(links.store, links.world.therapist, code)
    assert [r.record.rating for r in trend.rows] == [RatingState.DECLINED]
    assert [(f.rule, f.session_id) for f in trend.flags] == [("R6", session_id)]


async def test_declining_before_the_end_is_refused_kindly(client: httpx.AsyncClient, links: Links) -> None:
    code = links.client()
    _session_id, token = links.link(code, _hour() + timedelta(hours=3))
    refused = await client.post(f"/c/{token}/decline", headers=HTML)
    assert refused.status_code == 409 and "after your session has ended" in refused.text
    trend = client_trend(links.store, links.world.therapist, code)
    assert trend.flags == ()
    bad = await client.post("/c/not-a-real-token-at-all-000000/decline", headers=HTML)
    assert bad.status_code == 404
