"""Occurrence listings are reused between requests only while they are unchanged, in every web process."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import httpx
import pytest

from alliance.app import create_app
from core.accounts import create_api_token, create_therapist
from core.store import Store
from core.store.db import SQLITE_MAX_OVERFLOW, SQLITE_POOL_SIZE
from portal.listing_cache import ListingCache
from tests.portal.conftest import asgi_client
from tests.portal.feeds import Event, Feed, feed_server, soon

pytestmark = pytest.mark.anyio


@pytest.fixture
def feed() -> Iterator[Feed]:
    with feed_server() as f:
        f.serve(Event("single@test", soon(2, 10), "Intake"), Event("other@test", soon(3, 9), "Supervision"))
        yield f


def _bearer(store: Store, therapist: int) -> dict[str, str]:
    return {"Authorization": f"Bearer {create_api_token(store, therapist, 'tests').token}"}


WINDOW = {"from": soon(0, 0).isoformat(), "to": (soon(0, 0) + timedelta(days=30)).isoformat()}


async def _titles(client: httpx.AsyncClient, auth: dict[str, str]) -> list[tuple[str, str]]:
    response = await client.get("/api/v1/occurrences", params=WINDOW, headers=auth)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    return [(o["title"], o["connection"]) for o in response.json()]


async def test_a_second_web_process_sees_every_change_made_through_the_first(
    store: Store, therapist: int, settings: object, feed: Feed
) -> None:
    auth = _bearer(store, therapist)
    first_app = create_app(settings, store=store)  # type: ignore[arg-type]
    second_app = create_app(settings, store=store)  # type: ignore[arg-type]
    async with asgi_client(first_app) as first, asgi_client(second_app) as second:
        created = await second.post(
            "/api/v1/connections", json={"provider": "ics", "source": feed.url, "name": "work"}, headers=auth
        )
        connection = created.json()["id"]
        assert await _titles(first, auth) == []
        await second.post(f"/api/v1/connections/{connection}/sync", headers=auth)
        assert await _titles(first, auth) == [("Intake", "work"), ("Supervision", "work")]
        assert len(first_app.state.listing_cache) == 1

        # An edit synced by the other process, a rename, a removal: each shows at once.
        feed.serve(
            Event("single@test", soon(2, 10), "Intake (moved room)"), Event("other@test", soon(3, 9), "Supervision")
        )
        await second.post(f"/api/v1/connections/{connection}/sync", headers=auth)
        assert await _titles(first, auth) == [("Intake (moved room)", "work"), ("Supervision", "work")]
        feed.serve(Event("single@test", soon(2, 10), "Intake (moved room)"))
        await second.post(f"/api/v1/connections/{connection}/sync", headers=auth)
        assert await _titles(first, auth) == [("Intake (moved room)", "work")]
        await second.patch(f"/api/v1/connections/{connection}", json={"name": "practice"}, headers=auth)
        assert await _titles(first, auth) == [("Intake (moved room)", "practice")]
        await second.delete(f"/api/v1/connections/{connection}", headers=auth)
        assert await _titles(first, auth) == []


async def test_an_unchanged_listing_is_served_again_and_never_to_another_therapist(
    store: Store, therapist: int, client: httpx.AsyncClient, app: object, feed: Feed
) -> None:
    auth = _bearer(store, therapist)
    created = await client.post(
        "/api/v1/connections", json={"provider": "ics", "source": feed.url, "name": "work"}, headers=auth
    )
    await client.post(f"/api/v1/connections/{created.json()['id']}/sync", headers=auth)
    once = await client.get("/api/v1/occurrences", params=WINDOW, headers=auth)
    # The feed changes but nobody syncs it: the mirror (and so the listing) is what it was.
    feed.serve(Event("single@test", soon(2, 10), "Changed upstream, not yet synced"))
    again = await client.get("/api/v1/occurrences", params=WINDOW, headers=auth)
    assert again.content == once.content and len(once.json()) == 2

    other = create_therapist(store, "bo@example.org")
    assert await _titles(client, _bearer(store, other)) == []
    include = await client.get("/api/v1/occurrences", params=WINDOW | {"include_cancelled": "true"}, headers=auth)
    assert include.json() == once.json()


def test_the_cache_keeps_the_most_recent_bodies_within_its_byte_budget() -> None:
    cache: ListingCache[int] = ListingCache(max_bytes=10)
    cache.put("a", 1, b"12345")
    cache.put("b", 1, b"12345")
    assert cache.get("a") is not None  # a is now the most recent
    cache.put("c", 1, b"123")
    assert cache.get("b") is None and cache.get("a") is not None and cache.get("c") is not None
    assert cache.size_bytes == 8
    cache.put("a", 2, b"1")  # replacing an entry frees its old body
    assert cache.size_bytes == 4 and cache.get("a") == cache.get("a") and cache.get("a").version == 2  # type: ignore[union-attr]
    cache.put("huge", 1, b"x" * 11)  # larger than the whole budget: never kept, nothing evicted
    assert cache.get("huge") is None and len(cache) == 2
    off: ListingCache[int] = ListingCache(max_bytes=0)
    off.put("a", 1, b"1")
    assert len(off) == 0


async def test_with_every_pooled_connection_taken_a_cached_listing_still_answers_and_so_does_the_fallback(
    sqlite_store: Store, settings: object, feed: Feed
) -> None:
    # SQLite only: a database server's version read always goes through the thread pool.
    store = sqlite_store
    auth = _bearer(store, create_therapist(store, "ana@example.org"))
    app = create_app(settings, store=store)  # type: ignore[arg-type]
    async with asgi_client(app) as client:
        created = await client.post(
            "/api/v1/connections", json={"provider": "ics", "source": feed.url, "name": "work"}, headers=auth
        )
        await client.post(f"/api/v1/connections/{created.json()['id']}/sync", headers=auth)
        listed = await _titles(client, auth)  # the listing and the token are cached from here on
        assert listed == [("Intake", "work"), ("Supervision", "work")]

        # Slow requests in the thread pool hold every connection of the shared pool: the event
        # loop, which would wait for one (and stall every request) before, answers from the cache.
        held = [store.engine.connect() for _ in range(SQLITE_POOL_SIZE + SQLITE_MAX_OVERFLOW)]
        try:
            assert await _titles(client, auth) == listed
        finally:
            for connection in held:
                connection.close()

        # The loop's own connection is taken too (another event loop on the same store): the
        # version is read in the thread pool instead, and a change synced meanwhile shows.
        feed.serve(Event("single@test", soon(2, 10), "Intake (moved room)"))
        await client.post(f"/api/v1/connections/{created.json()['id']}/sync", headers=auth)
        with store.reader_nowait() as taken:
            assert taken is not None
            with store.reader_nowait() as second:
                assert second is None  # never waited for
            assert await _titles(client, auth) == [("Intake (moved room)", "work")]
            assert await _titles(client, auth) == [("Intake (moved room)", "work")]  # unchanged: reused
