"""Outlook -> mirror through MSAL and Graph against the emulator: listings, identity, series, faults, tokens."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest

from core.mirror import add_connection, ensure_therapist, list_connections, list_occurrences
from core.store import Store
from core.sync import ReauthorizationRequired, Status, sync_connection
from integrations.base.protocol import InvalidSettings
from integrations.outlook.cursor import OutlookCursor
from tests.integrations.outlook.world import BERLIN_WINDOWS, DELTA_PATH, OutlookWorld, at, timed, weekly


def _connect(store: Store) -> int:
    therapist = ensure_therapist(store, "ana@example.org")
    return add_connection(store, therapist, "outlook", "outlook", {})


def _mirror(store: Store, *, cancelled: bool = False) -> dict[tuple[str, str], Any]:
    return {(o.uid, o.recurrence_id): o for o in list_occurrences(store, include_cancelled=cancelled)}


def _cursor(store: Store, connection_id: int) -> str | None:
    from core.store.models import Connection

    with store.session() as session:
        return session.get_one(Connection, connection_id).cursor


def _set_cursor(store: Store, connection_id: int, cursor: str) -> None:
    from core.store.models import Connection

    with store.session() as session:
        session.get_one(Connection, connection_id).cursor = cursor


def test_a_full_listing_pages_through_the_window_with_the_preferences(
    outlook: OutlookWorld, sqlite_store: Store
) -> None:
    for n in range(5):
        outlook.seed({"subject": f"Session {n}", **timed(at(n + 1))})
    outlook.seed({"subject": "Long ago", **timed(at(-400))})  # outside the window: not listed
    conn = _connect(sqlite_store)
    settings = outlook.settings() | {"page_size": 2}

    report = sync_connection(sqlite_store, conn, outlook.provider(settings))

    sent = outlook.state.requests(DELTA_PATH)
    assert report.created == 5 and report.pages == len(sent) == 3
    assert "startDateTime=" in sent[0].query and "endDateTime=" in sent[0].query
    assert all("$skiptoken=" in r.query for r in sent[1:])
    for request in sent:
        assert 'IdType="ImmutableId"' in request.headers["prefer"]
        assert 'outlook.timezone="UTC"' in request.headers["prefer"]
        assert "odata.maxpagesize=2" in request.headers["prefer"]
    cursor = OutlookCursor.loads(_cursor(sqlite_store, conn))
    assert cursor is not None and "$deltatoken=" in cursor.delta_link


def test_a_round_without_changes_is_one_request(outlook: OutlookWorld, sqlite_store: Store) -> None:
    outlook.seed({"subject": "S", **timed(at(2))})
    outlook.seed({"subject": "W", **weekly(at(3, 17), 3)})
    conn = _connect(sqlite_store)
    sync_connection(sqlite_store, conn, outlook.provider())
    before = len(outlook.graph_requests())

    report = sync_connection(sqlite_store, conn, outlook.provider())

    assert report.changes == 0
    assert len(outlook.graph_requests()) - before == 1


def test_skeletal_occurrences_are_completed_from_their_master_fetched_once(
    outlook: OutlookWorld, sqlite_store: Store
) -> None:
    master = outlook.seed(
        {
            "subject": "Weekly session",
            "location": {"displayName": "Room 2"},
            "attendees": [{"emailAddress": {"address": "Client@Example.org"}, "type": "required"}],
            **weekly(at(2, 17), 5),
        }
    )
    conn = _connect(sqlite_store)

    sync_connection(sqlite_store, conn, outlook.provider(outlook.settings() | {"page_size": 2}))

    occurrences = sorted(_mirror(sqlite_store).values(), key=lambda o: o.start)
    assert len(occurrences) == 5
    assert {o.title for o in occurrences} == {"Weekly session"}
    assert {o.location for o in occurrences} == {"Room 2"}
    assert {o.attendees for o in occurrences} == {("client@example.org",)}
    assert {o.uid for o in occurrences} == {master["iCalUId"]}
    assert [o.recurrence_id for o in occurrences] == [o.start.isoformat() for o in occurrences]
    assert {o.timezone for o in occurrences} == {"Europe/Berlin"}  # from "W. Europe Standard Time"
    # Three pages of occurrences, one GET of the master.
    assert len(outlook.state.requests(f"/v1.0/me/events/{master['id']}")) == 1


def test_windows_zone_times_become_utc_and_all_day_keeps_its_dates(outlook: OutlookWorld, sqlite_store: Store) -> None:
    start = at(4, 9)
    timed_event = outlook.seed({"iCalUId": "berlin@x", "subject": "B", **timed(start, 50, BERLIN_WINDOWS)})
    day = at(5).date()
    outlook.seed(
        {
            "iCalUId": "allday@x",
            "subject": "Training",
            "isAllDay": True,
            "start": {"dateTime": f"{day}T00:00:00", "timeZone": "Pacific Standard Time"},
            "end": {"dateTime": f"{day + timedelta(days=1)}T00:00:00", "timeZone": "Pacific Standard Time"},
        }
    )
    conn = _connect(sqlite_store)
    sync_connection(sqlite_store, conn, outlook.provider())
    mirror = _mirror(sqlite_store)
    assert timed_event["iCalUId"] == "berlin@x"
    assert (mirror["berlin@x", ""].start, mirror["berlin@x", ""].end) == (start, start + timedelta(minutes=50))
    all_day = mirror["allday@x", ""]
    assert all_day.all_day and all_day.start.date() == day and all_day.end.date() == day + timedelta(days=1)
    assert all_day.timezone == "America/Los_Angeles"


def test_a_moved_occurrence_keeps_its_identity(outlook: OutlookWorld, sqlite_store: Store) -> None:
    outlook.seed({"subject": "Weekly", **weekly(at(2, 17), 3)})
    conn = _connect(sqlite_store)
    sync_connection(sqlite_store, conn, outlook.provider())
    first = min(_mirror(sqlite_store).values(), key=lambda o: o.start)

    new_start = first.start + timedelta(days=1, hours=2)
    outlook.state.update_event(first.provider_id, timed(new_start))
    report = sync_connection(sqlite_store, conn, outlook.provider())

    assert report.rescheduled == 1 and report.created == 0 and report.cancelled == 0
    moved = _mirror(sqlite_store)[first.uid, first.recurrence_id]
    assert moved.id == first.id and moved.start == new_start


def test_deleting_one_occurrence_and_then_the_series_cancels_them(outlook: OutlookWorld, sqlite_store: Store) -> None:
    master = outlook.seed({"subject": "Weekly", **weekly(at(2, 17), 3)})
    conn = _connect(sqlite_store)
    sync_connection(sqlite_store, conn, outlook.provider())
    first = min(_mirror(sqlite_store).values(), key=lambda o: o.start)

    outlook.state.delete_event(first.provider_id)
    assert sync_connection(sqlite_store, conn, outlook.provider()).cancelled == 1
    outlook.state.delete_event(master["id"])
    assert sync_connection(sqlite_store, conn, outlook.provider()).cancelled == 2
    assert {o.status for o in _mirror(sqlite_store, cancelled=True).values()} == {Status.CANCELLED}


def test_a_renamed_series_updates_every_occurrence(outlook: OutlookWorld, sqlite_store: Store) -> None:
    master = outlook.seed({"subject": "Before", **weekly(at(2, 17), 3)})
    conn = _connect(sqlite_store)
    sync_connection(sqlite_store, conn, outlook.provider())
    outlook.state.update_event(master["id"], {"subject": "After"})
    report = sync_connection(sqlite_store, conn, outlook.provider())
    assert report.updated == 3
    assert {o.title for o in _mirror(sqlite_store).values()} == {"After"}


def test_removed_items_outside_the_window_are_ignored(outlook: OutlookWorld, sqlite_store: Store) -> None:
    far = outlook.seed({"subject": "Far", **timed(at(500))})
    near = outlook.seed({"iCalUId": "near@x", "subject": "Near", **timed(at(2))})
    conn = _connect(sqlite_store)
    sync_connection(sqlite_store, conn, outlook.provider())

    outlook.state.update_event(far["id"], {"subject": "Far, renamed"})  # Graph says "@removed" for it
    before = len(outlook.graph_requests("/v1.0/me/events/"))
    report = sync_connection(sqlite_store, conn, outlook.provider())
    assert report.changes == 0
    assert len(outlook.graph_requests("/v1.0/me/events/")) == before  # an unknown id needs no lookup

    # A mirrored event moved beyond the window is no cancellation: it is where it went.
    outlook.state.update_event(near["id"], timed(at(600)))
    report = sync_connection(sqlite_store, conn, outlook.provider())
    moved = _mirror(sqlite_store)["near@x", ""]
    assert report.cancelled == 0 and report.rescheduled == 1
    assert moved.status is Status.CONFIRMED and moved.start == at(600)


def test_the_cursor_does_not_grow_with_the_calendar(outlook: OutlookWorld, sqlite_store: Store) -> None:
    """Every round rewrites the cursor; it holds the delta link, not an index of every event's id
    (the mirror knows which occurrence a deleted id was)."""
    events = [
        outlook.seed({"iCalUId": f"s{n}@x", "subject": f"S{n}", **timed(at(1 + n % 200, 8 + n % 10))})
        for n in range(300)
    ]
    conn = _connect(sqlite_store)
    sync_connection(sqlite_store, conn, outlook.provider())
    cursor = _cursor(sqlite_store, conn)
    assert cursor is not None and len(cursor) < 1_000  # an index of 300 ids alone would be ~45,000

    outlook.state.delete_event(events[123]["id"])
    report = sync_connection(sqlite_store, conn, outlook.provider())

    assert (report.cancelled, report.changes) == (1, 1)
    assert _mirror(sqlite_store, cancelled=True)["s123@x", ""].status is Status.CANCELLED
    assert len(_cursor(sqlite_store, conn) or "") < 1_000


def test_a_cursor_from_before_the_mirror_named_deletions_is_continued(
    outlook: OutlookWorld, sqlite_store: Store
) -> None:
    kept = outlook.seed({"iCalUId": "a@x", "subject": "A", **timed(at(2))})
    gone = outlook.seed({"iCalUId": "b@x", "subject": "B", **timed(at(3))})
    conn = _connect(sqlite_store)
    sync_connection(sqlite_store, conn, outlook.provider())
    # The cursor as version 1 wrote it: the same fields plus the identity index.
    old = json.loads(_cursor(sqlite_store, conn) or "") | {
        "v": 1,
        "index": {kept["id"]: ["a@x", ""], gone["id"]: ["b@x", ""]},
    }
    _set_cursor(sqlite_store, conn, json.dumps(old))
    outlook.state.delete_event(gone["id"])
    before = len(outlook.state.requests(DELTA_PATH))

    report = sync_connection(sqlite_store, conn, outlook.provider())

    delta = outlook.state.requests(DELTA_PATH)[before:]
    assert len(delta) == 1 and "$deltatoken=" in delta[0].query  # continued, not listed again
    assert (report.cancelled, report.changes, report.full_resync) == (1, 1, False)
    rewritten = json.loads(_cursor(sqlite_store, conn) or "")
    assert rewritten["v"] == 2 and "index" not in rewritten


def test_cancelled_meetings_and_teams_links(outlook: OutlookWorld, sqlite_store: Store) -> None:
    meeting = outlook.seed({"iCalUId": "teams@x", "subject": "Online", "isOnlineMeeting": True, **timed(at(2))})
    conn = _connect(sqlite_store)
    sync_connection(sqlite_store, conn, outlook.provider())
    assert _mirror(sqlite_store)["teams@x", ""].video_url.startswith("https://teams.microsoft.com/l/meetup-join/")

    outlook.state.update_event(meeting["id"], {"isCancelled": True})  # the organizer cancelled it
    assert sync_connection(sqlite_store, conn, outlook.provider()).cancelled == 1


def test_an_expired_delta_link_falls_back_to_a_full_listing(outlook: OutlookWorld, sqlite_store: Store) -> None:
    outlook.seed({"iCalUId": "a@x", "subject": "A", **timed(at(2))})
    conn = _connect(sqlite_store)
    sync_connection(sqlite_store, conn, outlook.provider())
    gone = outlook.seed({"iCalUId": "b@x", "subject": "B", **timed(at(3))})
    sync_connection(sqlite_store, conn, outlook.provider())
    outlook.state.delete_event(gone["id"])
    outlook.state.expire_delta_tokens()

    report = sync_connection(sqlite_store, conn, outlook.provider())

    assert report.full_resync and report.cancelled == 1
    assert {k: o.status for k, o in _mirror(sqlite_store, cancelled=True).items()} == {
        ("a@x", ""): Status.CONFIRMED,
        ("b@x", ""): Status.CANCELLED,
    }


def test_a_skip_token_lost_half_way_restarts_the_listing(outlook: OutlookWorld, sqlite_store: Store) -> None:
    for n in range(4):
        outlook.seed({"subject": f"S{n}", **timed(at(n + 1))})
    outlook.state.inject("delta", 410, code="SyncStateNotFound")  # hits the first request...
    conn = _connect(sqlite_store)
    with pytest.raises(Exception, match="expired delta state"):
        sync_connection(sqlite_store, conn, outlook.provider(outlook.settings() | {"page_size": 2}))
    # ...and on the second page of a listing, it starts over.
    original = outlook.state.next_page
    calls = {"n": 0}

    def losing(token: str) -> Any:
        calls["n"] += 1
        if calls["n"] == 2:
            outlook.state.expire_delta_tokens()
        return original(token)

    outlook.state.next_page = losing
    try:
        report = sync_connection(sqlite_store, conn, outlook.provider(outlook.settings() | {"page_size": 2}))
    finally:
        outlook.state.next_page = original
    assert report.created == 4 and len(_mirror(sqlite_store)) == 4


def test_a_round_that_failed_half_way_is_followed_by_a_complete_listing(
    outlook: OutlookWorld, sqlite_store: Store
) -> None:
    """Graph names as removed only what it delivered under a delta link's own state. Occurrences a
    failed round stored would never be reported removed by a round from the old link."""
    outlook.seed({"subject": "S", **timed(at(1))})
    conn = _connect(sqlite_store)
    settings = outlook.settings() | {"page_size": 2}
    sync_connection(sqlite_store, conn, outlook.provider(settings))
    master = outlook.seed({"subject": "Weekly", **weekly(at(3, 17), 20)})  # ten pages: more than fetched ahead

    def fail_from_now_on(done: int, total: int | None) -> None:
        outlook.state.inject("graph", 503, times=10_000)

    with pytest.raises(Exception, match="answered 503"):
        sync_connection(sqlite_store, conn, outlook.provider(settings), progress=fail_from_now_on)
    outlook.state.faults.clear()
    stored = {o.start for o in _mirror(sqlite_store).values() if o.title == "Weekly"}
    assert stored and _cursor(sqlite_store, conn) is None  # a page was stored; the old link was let go

    outlook.state.update_event(master["id"], timed(at(5, 9), 50))  # the series moves: new occurrence ids
    before = len(outlook.state.requests(DELTA_PATH))
    sync_connection(sqlite_store, conn, outlook.provider(settings))

    assert "startDateTime=" in outlook.state.requests(DELTA_PATH)[before].query  # everything listed again
    live = {o.start for o in _mirror(sqlite_store).values() if o.title == "Weekly"}
    expected = {i.start for i in outlook.state.instances(outlook.provider().window) if i.master_id}
    assert live == expected and not (stored & live)


def test_throttling_waits_as_long_as_retry_after_says(outlook: OutlookWorld, sqlite_store: Store) -> None:
    outlook.seed({"subject": "S", **timed(at(2))})
    outlook.state.inject("delta", 429, retry_after=7, times=2)
    conn = _connect(sqlite_store)
    report = sync_connection(sqlite_store, conn, outlook.provider())
    assert report.created == 1
    assert outlook.waits == [7.0, 7.0]


def test_lasting_throttling_is_an_error_that_keeps_the_connection(outlook: OutlookWorld, sqlite_store: Store) -> None:
    outlook.state.inject("delta", 503, times=50)
    conn = _connect(sqlite_store)
    with pytest.raises(Exception, match="answered 503"):
        sync_connection(sqlite_store, conn, outlook.provider())
    health = {c.id: c.health for c in list_connections(sqlite_store)}
    assert health[conn] == "error"


def test_at_most_two_requests_per_mailbox_at_once(outlook: OutlookWorld, sqlite_store: Store) -> None:
    for n in range(24):
        outlook.seed({"subject": f"Series {n}", **weekly(at(2 + n % 7, 8 + n % 12), 2)})
    outlook.state.settings.latency = 0.05  # makes overlapping requests overlap for real
    conn = _connect(sqlite_store)

    report = sync_connection(sqlite_store, conn, outlook.provider())

    assert report.created == 48
    # 24 masters in two $batch calls (20 + 4) side by side: Graph would run a batch's requests four
    # at a time, these are chained, so the mailbox never had more than Alliance's 2 in flight.
    assert len(outlook.state.requests("/v1.0/$batch", method="POST")) == 2
    masters = [r.path for r in outlook.state.requests("/v1.0/me/events/", method="GET")]
    assert len(masters) == len(set(masters)) == 24
    assert outlook.state.max_in_flight == 2
    assert all(r.status != 429 for r in outlook.graph_requests())


def test_revoked_consent_marks_the_connection_needs_reconnect(outlook: OutlookWorld, sqlite_store: Store) -> None:
    outlook.seed({"subject": "S", **timed(at(2))})
    conn = _connect(sqlite_store)
    sync_connection(sqlite_store, conn, outlook.provider())
    outlook.state.revoke_consent()

    with pytest.raises(ReauthorizationRequired, match="alliance connect outlook"):
        sync_connection(sqlite_store, conn, outlook.provider())

    view = next(c for c in list_connections(sqlite_store) if c.id == conn)
    assert view.health == "needs_reconnect" and "alliance connect outlook" in (view.last_error or "")
    assert len(_mirror(sqlite_store)) == 1  # nothing mirrored is lost


def test_a_refreshed_token_cache_is_persisted_and_used_next_time(outlook: OutlookWorld, sqlite_store: Store) -> None:
    outlook.seed({"subject": "S", **timed(at(2))})
    conn = _connect(sqlite_store)
    sync_connection(sqlite_store, conn, outlook.provider())
    assert outlook.saved == []  # the access token from the sign-in was still fresh: nothing to save

    outlook.state.expire_access_tokens()  # Graph now answers 401 to the cached token
    outlook.seed({"subject": "T", **timed(at(3))})
    report = sync_connection(sqlite_store, conn, outlook.provider())

    assert report.created == 1
    assert outlook.saved, "the refreshed cache must be handed back for storage"
    saved = outlook.saved[-1]
    assert json.loads(saved["token_cache"]) != json.loads(outlook.connection["token_cache"])
    assert saved["home_account_id"] == outlook.connection["home_account_id"]
    # A provider built from the saved settings works without another refresh.
    refreshes = len(outlook.state.requests("/oauth2/v2.0/token"))
    outlook.saved.clear()
    assert sync_connection(sqlite_store, conn, outlook.provider(saved)).changes == 0
    assert len(outlook.state.requests("/oauth2/v2.0/token")) == refreshes and outlook.saved == []


def test_settings_that_cannot_work_are_refused_clearly(outlook: OutlookWorld) -> None:
    with pytest.raises(InvalidSettings, match="token cache"):
        outlook.provider({"home_account_id": "x", "client_id": "y"})
    with pytest.raises(InvalidSettings, match="ALLIANCE_MS_CLIENT_ID"):
        outlook.provider(outlook.settings() | {"client_id": "another-app"})
    with pytest.raises(InvalidSettings, match="unknown Outlook setting"):
        outlook.provider(outlook.settings() | {"calendar": "x"})


def test_syncs_share_one_kept_alive_connection_to_graph(outlook: OutlookWorld, sqlite_store: Store) -> None:
    outlook.seed({"subject": "S", **timed(at(2))})
    conn = _connect(sqlite_store)
    sync_connection(sqlite_store, conn, outlook.provider())  # the complete listing
    before = len(outlook.state.requests(DELTA_PATH))

    for _ in range(3):  # every sync builds its provider (and client) anew
        sync_connection(sqlite_store, conn, outlook.provider())

    rounds = outlook.state.requests(DELTA_PATH)[before:]
    assert len(rounds) == 3
    assert len({r.client for r in rounds}) == 1, "every sync opened its own connection"
