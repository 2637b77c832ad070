"""The mirror over the JSON API: connections, syncing them, occurrences and their history."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from sqlalchemy import select, update

from alliance.settings import Settings
from alliance.syncing import sync_all
from core.accounts import create_api_token
from core.store import Store
from core.store.models import Connection
from tests.portal.conftest import csrf_from, sign_in
from tests.portal.feeds import Event, Feed, feed_server, soon

pytestmark = pytest.mark.anyio


@pytest.fixture
def feed() -> Iterator[Feed]:
    with feed_server() as f:
        f.serve(
            Event("weekly@test", soon(1, 17), "Session K7Q2", rrule="FREQ=WEEKLY;COUNT=4"),
            Event("single@test", soon(2, 10), "Supervision with Dr. Vega"),
        )
        yield f


@pytest.fixture
def auth(store: Store, therapist: int) -> dict[str, str]:
    return {"Authorization": f"Bearer {create_api_token(store, therapist, 'tests').token}"}


async def _connect(client: httpx.AsyncClient, auth: dict[str, str], feed: Feed, name: str | None = "work") -> int:
    body = {"provider": "ics", "source": feed.url} | ({"name": name} if name else {})
    created = await client.post("/api/v1/connections", json=body, headers=auth)
    assert created.status_code == 201, created.text
    connection_id: int = created.json()["id"]
    return connection_id


async def test_add_sync_and_read_a_feed(client: httpx.AsyncClient, auth: dict[str, str], feed: Feed) -> None:
    created = await client.post("/api/v1/connections", json={"provider": "ics", "source": feed.url}, headers=auth)
    assert created.status_code == 201
    body = created.json()
    assert body["name"] == "127.0.0.1"  # the host, never the secret path
    assert body["health"] == "ok" and body["last_sync_at"] is None and body["occurrences"] == 0
    assert feed.requests == 0  # not fetched inline: the periodic job or the sync endpoint does it
    assert feed.secret not in created.text

    synced = await client.post(f"/api/v1/connections/{body['id']}/sync", headers=auth)
    assert synced.status_code == 200, synced.text
    assert synced.json() == {
        "connection_id": body["id"],
        "created": 5,
        "updated": 0,
        "rescheduled": 0,
        "restored": 0,
        "cancelled": 0,
        "unchanged": 0,
        "full_resync": False,
    }

    listed = await client.get("/api/v1/connections", headers=auth)
    assert feed.secret not in listed.text and "source" not in listed.text
    [row] = listed.json()
    assert row["occurrences"] == 5 and row["last_result"]["created"] == 5 and row["last_success_at"]

    window = {"from": soon(0, 0).date().isoformat(), "to": (soon(0, 0) + timedelta(days=30)).isoformat()}
    occurrences = (await client.get("/api/v1/occurrences", params=window, headers=auth)).json()
    assert [o["title"] for o in occurrences] == ["Session K7Q2", "Supervision with Dr. Vega"] + ["Session K7Q2"] * 3
    first = occurrences[0]
    assert set(first) == {
        "id",
        "uid",
        "recurrence_id",
        "start",
        "end",
        "all_day",
        "timezone",
        "status",
        "title",
        "location",
        "video_url",
        "connection",
        "connection_id",
    }
    assert first["uid"] == "weekly@test" and first["recurrence_id"] and first["connection"] == "127.0.0.1"
    assert first["start"] == soon(1, 17).isoformat()
    # The default window is today and the next 30 days, like `alliance events`.
    assert (await client.get("/api/v1/occurrences", headers=auth)).json() == occurrences

    detail = (await client.get(f"/api/v1/occurrences/{first['id']}", headers=auth)).json()
    assert detail["title"] == "Session K7Q2" and detail["session_id"] is None
    assert [h["kind"] for h in detail["history"]] == ["created"]


async def test_history_follows_reschedules_cancellations_and_restores(
    client: httpx.AsyncClient, auth: dict[str, str], feed: Feed
) -> None:
    connection_id = await _connect(client, auth, feed)
    assert (await client.post(f"/api/v1/connections/{connection_id}/sync", headers=auth)).status_code == 200
    single = next(
        o for o in (await client.get("/api/v1/occurrences", headers=auth)).json() if o["uid"] == "single@test"
    )

    moved = soon(3, 12)
    feed.serve(
        Event("weekly@test", soon(1, 17), "Session K7Q2", rrule="FREQ=WEEKLY;COUNT=4"),
        Event("single@test", moved, "Supervision with Dr. Vega"),
    )
    counts = (await client.post(f"/api/v1/connections/{connection_id}/sync", headers=auth)).json()
    assert counts["rescheduled"] == 1 and counts["unchanged"] == 4

    feed.serve(Event("weekly@test", soon(1, 17), "Session K7Q2", rrule="FREQ=WEEKLY;COUNT=4"))
    assert (await client.post(f"/api/v1/connections/{connection_id}/sync", headers=auth)).json()["cancelled"] == 1
    visible = (await client.get("/api/v1/occurrences", headers=auth)).json()
    assert "single@test" not in {o["uid"] for o in visible}
    everything = (await client.get("/api/v1/occurrences", params={"include_cancelled": "true"}, headers=auth)).json()
    assert {o["uid"]: o["status"] for o in everything}["single@test"] == "cancelled"

    feed.serve(
        Event("weekly@test", soon(1, 17), "Session K7Q2", rrule="FREQ=WEEKLY;COUNT=4"),
        Event("single@test", moved, "Supervision (moved room)"),
    )
    assert (await client.post(f"/api/v1/connections/{connection_id}/sync", headers=auth)).json()["restored"] == 1

    detail = (await client.get(f"/api/v1/occurrences/{single['id']}", headers=auth)).json()
    assert detail["title"] == "Supervision (moved room)"
    history = detail["history"]
    assert [h["kind"] for h in history] == ["created", "rescheduled", "cancelled", "restored"]
    rescheduled = history[1]
    assert datetime.fromisoformat(rescheduled["old_start"]) == soon(2, 10)
    assert datetime.fromisoformat(rescheduled["new_start"]) == moved


async def test_bad_sources_are_422_naming_source_without_echoing_it(
    client: httpx.AsyncClient, auth: dict[str, str], settings: Settings
) -> None:
    secret_file = settings.home / "master.key"
    for source in (
        str(secret_file),
        f"file://{secret_file}",
        "ftp://example.org/x.ics",
        "http://",
        "https://h:99999/x",
    ):
        answer = await client.post("/api/v1/connections", json={"provider": "ics", "source": source}, headers=auth)
        assert answer.status_code == 422, source
        assert answer.headers["content-type"] == "application/problem+json"
        assert [e["name"] for e in answer.json()["errors"]] == ["source"]
        assert source not in answer.text
    unknown = await client.post(
        "/api/v1/connections", json={"provider": "exchange", "source": "https://x"}, headers=auth
    )
    assert unknown.status_code == 422 and [e["name"] for e in unknown.json()["errors"]] == ["provider"]
    assert (await client.get("/api/v1/connections", headers=auth)).json() == []


async def test_duplicate_names_are_409_and_rename(client: httpx.AsyncClient, auth: dict[str, str], feed: Feed) -> None:
    first = await _connect(client, auth, feed, "work")
    again = await client.post(
        "/api/v1/connections", json={"provider": "ics", "source": feed.url, "name": "work"}, headers=auth
    )
    assert again.status_code == 409 and again.json()["status"] == 409
    second = await _connect(client, auth, feed, "home")
    clash = await client.patch(f"/api/v1/connections/{second}", json={"name": "work"}, headers=auth)
    assert clash.status_code == 409
    renamed = await client.patch(f"/api/v1/connections/{first}", json={"name": "practice"}, headers=auth)
    assert renamed.status_code == 200 and renamed.json()["name"] == "practice"
    assert (await client.get(f"/api/v1/connections/{first}", headers=auth)).json()["name"] == "practice"
    assert (await client.patch("/api/v1/connections/999999", json={"name": "x"}, headers=auth)).status_code == 404


async def test_a_failing_source_is_502_with_one_line(
    client: httpx.AsyncClient, auth: dict[str, str], feed: Feed
) -> None:
    connection_id = await _connect(client, auth, feed)
    feed.status = 503
    failed = await client.post(f"/api/v1/connections/{connection_id}/sync", headers=auth)
    assert failed.status_code == 502 and failed.headers["content-type"] == "application/problem+json"
    detail = failed.json()["detail"]
    assert "\n" not in detail and "503" in detail and feed.secret not in failed.text
    [row] = (await client.get("/api/v1/connections", headers=auth)).json()
    assert row["health"] == "error" and row["last_error"] == detail


async def test_a_running_sync_is_409(client: httpx.AsyncClient, auth: dict[str, str], feed: Feed, store: Store) -> None:
    connection_id = await _connect(client, auth, feed)
    with store.session() as session:  # another machine's sync holds the lease
        session.execute(
            update(Connection)
            .where(Connection.id == connection_id)
            .values(lock_owner="elsewhere:1:x", lock_expires_at=datetime.now(UTC) + timedelta(minutes=5))
        )
    busy = await client.post(f"/api/v1/connections/{connection_id}/sync", headers=auth)
    assert busy.status_code == 409 and feed.requests == 0


async def test_delete_hides_the_connection_and_its_occurrences_but_keeps_sessions(
    client: httpx.AsyncClient, auth: dict[str, str], feed: Feed, store: Store, settings: Settings
) -> None:
    connection_id = await _connect(client, auth, feed)
    await client.post(f"/api/v1/connections/{connection_id}/sync", headers=auth)
    occurrence = (await client.get("/api/v1/occurrences", headers=auth)).json()[0]
    code = (await client.post("/api/v1/clients", json={}, headers=auth)).json()["code"]
    assigned = await client.post("/api/v1/assignments", json={"uid": "single@test", "client": code}, headers=auth)
    session_id = assigned.json()["session"]["id"]

    assert (await client.delete(f"/api/v1/connections/{connection_id}", headers=auth)).status_code == 204

    assert (await client.get("/api/v1/connections", headers=auth)).json() == []
    assert (await client.get("/api/v1/occurrences", params={"include_cancelled": "true"}, headers=auth)).json() == []
    assert (await client.get(f"/api/v1/occurrences/{occurrence['id']}", headers=auth)).status_code == 404
    assert (await client.get(f"/api/v1/connections/{connection_id}", headers=auth)).status_code == 404
    assert (await client.post(f"/api/v1/connections/{connection_id}/sync", headers=auth)).status_code == 404
    assert (await client.delete(f"/api/v1/connections/{connection_id}", headers=auth)).status_code == 404
    # Its events can no longer be assigned; the session made before stays, as the therapy's record.
    again = await client.post("/api/v1/assignments", json={"uid": "weekly@test", "client": code}, headers=auth)
    assert again.status_code == 404
    kept = await client.get(f"/api/v1/sessions/{session_id}", headers=auth)
    assert kept.status_code == 200 and kept.json()["uid"] == "single@test"

    # The periodic job skips it, and its secret feed address is gone from the database.
    requests_before = feed.requests
    assert [o.connection.id for o in sync_all(store, settings)] == []
    assert feed.requests == requests_before
    with store.session() as session:
        row = session.scalars(select(Connection).where(Connection.id == connection_id)).one()
        assert row.removed_at is not None and row.credentials is None
    # The name is free again.
    assert await _connect(client, auth, feed, "work") != connection_id


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"from": "yesterday"}, "from"),
        ({"to": "2026-13-01"}, "to"),
        ({"from": "2026-11-01T25:00"}, "from"),
        ({"from": "2026-11-02", "to": "2026-11-01"}, "to"),
        ({"from": "9999-12-31"}, "from"),  # no room for the default 30 days
        ({"from": "0001-01-01T00:00:00+05:00"}, "from"),  # before the first UTC instant
        ({"include_cancelled": "perhaps"}, "include_cancelled"),
        ({"form": "2026-11-01"}, "form"),  # a typo is refused, not answered with the default window
    ],
)
async def test_bad_windows_are_422_naming_the_parameter(
    client: httpx.AsyncClient, auth: dict[str, str], params: dict[str, str], field: str
) -> None:
    answer = await client.get("/api/v1/occurrences", params=params, headers=auth)
    assert answer.status_code == 422, answer.text
    assert [e["name"] for e in answer.json()["errors"]] == [field]


async def test_the_api_works_with_a_browser_session_and_csrf(
    client: httpx.AsyncClient, therapist: int, feed: Feed
) -> None:
    await sign_in(client)
    assert (await client.get("/api/v1/connections")).status_code == 200
    body = {"provider": "ics", "source": feed.url}
    assert (await client.post("/api/v1/connections", json=body)).status_code == 403
    csrf = {"X-CSRF-Token": csrf_from((await client.get("/")).text)}
    created = await client.post("/api/v1/connections", json=body, headers=csrf)
    assert created.status_code == 201
    assert (await client.delete(f"/api/v1/connections/{created.json()['id']}")).status_code == 403
    assert (await client.delete(f"/api/v1/connections/{created.json()['id']}", headers=csrf)).status_code == 204
