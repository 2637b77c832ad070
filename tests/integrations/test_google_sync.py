"""Google -> mirror through the real client libraries and the emulator: listings, identity, recurrence."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from core.mirror import add_connection, ensure_therapist, list_occurrences
from core.store import Store
from core.sync import OccurrenceKey, Status, sync_connection
from integrations.google.cursor import GoogleCursor
from integrations.google.mapping import IdentityIndex, page_changes, to_occurrence
from tests.integrations.google_world import EVENTS_PATH, MADRID, GoogleWorld, at, timed


def _connect(store: Store) -> int:
    therapist = ensure_therapist(store, "ana@example.org")
    return add_connection(store, therapist, "google", "google", {})


def _cursor(store: Store, connection_id: int) -> str | None:
    from core.store.models import Connection

    with store.session() as session:
        return session.get_one(Connection, connection_id).cursor


def _weekly(world: GoogleWorld, start_local: str, count: int = 4, title: str = "Weekly") -> dict[str, Any]:
    end_local = (datetime.fromisoformat(start_local) + timedelta(minutes=50)).isoformat()
    return world.seed(
        {
            "summary": title,
            "recurrence": [f"RRULE:FREQ=WEEKLY;COUNT={count}"],
            "start": {"dateTime": start_local, "timeZone": MADRID},
            "end": {"dateTime": end_local, "timeZone": MADRID},
        }
    )


def _local(day: int, hour: int = 18) -> str:
    """A naive local date-time ``day`` days ahead (Madrid wall clock)."""
    return (datetime.now(UTC) + timedelta(days=day)).strftime(f"%Y-%m-%dT{hour:02d}:00:00")


def test_full_sync_pages_through_the_window_and_keeps_the_sync_token(google: GoogleWorld, sqlite_store: Store) -> None:
    for n in range(7):
        google.seed({"summary": f"Session {n}", **timed(at(n + 1))})
    google.seed({"summary": "Long ago", **timed(at(-400))})  # outside the window: not listed
    conn = _connect(sqlite_store)

    report = sync_connection(sqlite_store, conn, google.provider(max_results=3))

    sent = google.list_requests()
    assert report.created == 7 and report.pages == len(sent) == 3
    assert all(q["query"]["singleEvents"] == ["true"] and q["query"]["maxResults"] == ["3"] for q in sent)
    assert all(q["query"]["eventTypes"] == ["default"] for q in sent)
    assert "timeMin" in sent[0]["query"] and "timeMax" in sent[0]["query"] and "pageToken" not in sent[0]["query"]
    assert [("pageToken" in q["query"]) for q in sent] == [False, True, True]
    cursor = GoogleCursor.loads(_cursor(sqlite_store, conn))
    assert cursor is not None and cursor.sync_token and cursor.params["maxResults"] == 3
    titles = sorted(o.title for o in list_occurrences(sqlite_store))
    assert titles == [f"Session {n}" for n in range(7)]


def test_an_incremental_sync_without_changes_is_exactly_one_request(google: GoogleWorld, sqlite_store: Store) -> None:
    for n in range(5):
        google.seed({"summary": f"S{n}", **timed(at(n + 1))})
    conn = _connect(sqlite_store)
    sync_connection(sqlite_store, conn, google.provider(max_results=2))
    google.state.clear_request_log()

    report = sync_connection(sqlite_store, conn, google.provider(max_results=2))

    assert report.changes == 0 and report.pages == 1 and not report.full_resync
    (only,) = google.state.requests()  # nothing else either: no token refresh, no calendar lookup
    assert only["path"].endswith("/events") and only["query"]["syncToken"]
    # the rules for sync tokens: no window, no ordering; the listing's other parameters repeated
    assert not {"timeMin", "timeMax", "orderBy", "pageToken"} & set(only["query"])
    assert only["query"]["singleEvents"] == ["true"] and only["query"]["maxResults"] == ["2"]


def test_incremental_changes_are_applied(google: GoogleWorld, sqlite_store: Store) -> None:
    moved = google.seed({"summary": "Move me", **timed(at(2))})
    renamed = google.seed({"summary": "Old title", **timed(at(3))})
    conn = _connect(sqlite_store)
    sync_connection(sqlite_store, conn, google.provider())
    before = {o.provider_id: o.id for o in list_occurrences(sqlite_store)}

    google.state.move_event("primary", moved["id"], {"dateTime": at(4, 17).isoformat()})
    google.state.retitle_event("primary", renamed["id"], "New title")
    google.seed({"summary": "Intake", **timed(at(5))})
    report = sync_connection(sqlite_store, conn, google.provider())

    assert (report.rescheduled, report.updated, report.created, report.full_resync) == (1, 1, 1, False)
    after = {o.provider_id: o for o in list_occurrences(sqlite_store)}
    assert after[moved["id"]].id == before[moved["id"]]
    assert after[moved["id"]].start == at(4, 17) and after[moved["id"]].end == at(4, 17) + timedelta(minutes=50)
    assert after[renamed["id"]].title == "New title"


def test_a_moved_instance_keeps_its_identity(google: GoogleWorld, sqlite_store: Store) -> None:
    series = _weekly(google, _local(7))
    conn = _connect(sqlite_store)
    sync_connection(sqlite_store, conn, google.provider())
    instances = sorted(list_occurrences(sqlite_store), key=lambda o: o.start)
    assert len(instances) == 4 and len({o.uid for o in instances}) == 1
    second = instances[1]
    assert second.uid == series["iCalUID"] and second.recurrence_id == second.start.isoformat()

    new_start = second.start + timedelta(days=1, hours=-2)
    google.state.move_event("primary", second.provider_id, {"dateTime": new_start.isoformat(), "timeZone": MADRID})
    report = sync_connection(sqlite_store, conn, google.provider())

    assert (report.rescheduled, report.created, report.cancelled) == (1, 0, 0)
    moved = next(o for o in list_occurrences(sqlite_store) if o.id == second.id)
    assert moved.start == new_start and moved.recurrence_id == second.recurrence_id  # the original slot
    assert len(list_occurrences(sqlite_store, include_cancelled=True)) == 4


def test_a_cancelled_instance_of_a_live_series_is_a_cancelled_occurrence(
    google: GoogleWorld, sqlite_store: Store
) -> None:
    _weekly(google, _local(7))
    conn = _connect(sqlite_store)
    sync_connection(sqlite_store, conn, google.provider())
    third = sorted(list_occurrences(sqlite_store), key=lambda o: o.start)[2]

    google.state.cancel_event("primary", third.provider_id)
    report = sync_connection(sqlite_store, conn, google.provider())

    assert report.cancelled == 1 and report.changes == 1
    statuses = {o.id: o.status for o in list_occurrences(sqlite_store, include_cancelled=True)}
    assert statuses[third.id] is Status.CANCELLED
    assert sorted(s.value for s in statuses.values()) == ["cancelled", "confirmed", "confirmed", "confirmed"]


def test_deleted_events_and_series_are_cancelled_not_removed(google: GoogleWorld, sqlite_store: Store) -> None:
    single = google.seed({"summary": "One-off", **timed(at(2))})
    series = _weekly(google, _local(3), count=3)
    google.seed({"summary": "Stays", **timed(at(4))})
    conn = _connect(sqlite_store)
    sync_connection(sqlite_store, conn, google.provider())

    google.state.cancel_event("primary", single["id"])
    google.state.cancel_event("primary", series["id"])
    report = sync_connection(sqlite_store, conn, google.provider())

    assert report.cancelled == 4 and not report.full_resync
    rows = list_occurrences(sqlite_store, include_cancelled=True)
    assert len(rows) == 5
    assert [o.title for o in rows if o.status is not Status.CANCELLED] == ["Stays"]


def test_an_expired_sync_token_falls_back_to_a_full_listing_without_duplicates(
    google: GoogleWorld, sqlite_store: Store
) -> None:
    _weekly(google, _local(5), count=3)
    google.seed({"summary": "A", **timed(at(2))})
    conn = _connect(sqlite_store)
    sync_connection(sqlite_store, conn, google.provider(max_results=2))
    google.seed({"summary": "B", **timed(at(3))})
    google.state.expire_sync_tokens()
    google.state.clear_request_log()

    report = sync_connection(sqlite_store, conn, google.provider(max_results=2))

    assert report.full_resync and report.created == 1 and report.cancelled == 0
    sent = google.list_requests()
    assert "syncToken" in sent[0]["query"] and sent[0]["status"] == 410
    assert all("timeMin" in q["query"] for q in sent[1:])
    rows = list_occurrences(sqlite_store, include_cancelled=True)
    keys = [(o.uid, o.recurrence_id) for o in rows]
    assert len(keys) == len(set(keys)) == 5
    again = sync_connection(sqlite_store, conn, google.provider(max_results=2))
    assert again.changes == 0 and not again.full_resync


def test_event_types_that_are_not_appointments_are_ignored(google: GoogleWorld, sqlite_store: Store) -> None:
    google.seed({"summary": "Session", **timed(at(2))})
    for kind in ("outOfOffice", "focusTime", "workingLocation", "fromGmail"):
        google.seed({"summary": kind, "eventType": kind, **timed(at(3))})
    google.seed({"summary": "Birthday", "eventType": "birthday", "start": {"date": at(4).date().isoformat()},
                 "end": {"date": at(5).date().isoformat()}})  # fmt: skip
    conn = _connect(sqlite_store)

    sync_connection(sqlite_store, conn, google.provider())
    google.seed({"summary": "Away", "eventType": "outOfOffice", **timed(at(6))})
    sync_connection(sqlite_store, conn, google.provider())

    assert [o.title for o in list_occurrences(sqlite_store, include_cancelled=True)] == ["Session"]
    # Should Google ignore eventTypes, the mapping still drops them.
    assert (
        to_occurrence({"id": "x", "iCalUID": "x@google.com", "eventType": "outOfOffice", **timed(at(1))}, MADRID)
        is None
    )


def test_all_day_events_and_a_weekly_series_across_daylight_saving(google: GoogleWorld, sqlite_store: Store) -> None:
    google.seed({"summary": "Retreat", "start": {"date": "2027-03-10"}, "end": {"date": "2027-03-12"}})
    google.seed(
        {
            "summary": "Group",
            "recurrence": ["RRULE:FREQ=WEEKLY;COUNT=4"],
            "start": {"dateTime": "2027-03-15T18:00:00", "timeZone": MADRID},  # Europe moves clocks on 03-28
            "end": {"dateTime": "2027-03-15T19:30:00", "timeZone": MADRID},
        }
    )
    conn = _connect(sqlite_store)
    sync_connection(sqlite_store, conn, google.provider(now=datetime(2027, 1, 1, tzinfo=UTC)))

    rows = list_occurrences(sqlite_store)
    retreat = next(o for o in rows if o.title == "Retreat")
    assert retreat.all_day and retreat.recurrence_id == ""
    assert (retreat.start, retreat.end) == (datetime(2027, 3, 10, tzinfo=UTC), datetime(2027, 3, 12, tzinfo=UTC))
    assert retreat.timezone == MADRID  # the calendar's zone: all-day events carry none
    group = sorted((o for o in rows if o.title == "Group"), key=lambda o: o.start)
    assert [o.start.hour for o in group] == [17, 17, 16, 16]  # UTC: 18:00 CET, then 18:00 CEST
    assert [o.end - o.start for o in group] == [timedelta(minutes=90)] * 4
    assert all(o.timezone == MADRID for o in group)
    assert [o.recurrence_id for o in group] == [o.start.isoformat() for o in group]


def test_an_all_day_series_instance_is_keyed_by_its_date(google: GoogleWorld, sqlite_store: Store) -> None:
    day = at(10).date()
    google.seed(
        {
            "summary": "Supervision day",
            "recurrence": ["RRULE:FREQ=WEEKLY;COUNT=2"],
            "start": {"date": day.isoformat()},
            "end": {"date": (day + timedelta(days=1)).isoformat()},
        }
    )
    conn = _connect(sqlite_store)
    sync_connection(sqlite_store, conn, google.provider())
    rows = sorted(list_occurrences(sqlite_store), key=lambda o: o.start)
    assert [o.recurrence_id for o in rows] == [day.isoformat(), (day + timedelta(days=7)).isoformat()]
    assert all(o.all_day for o in rows)


def test_event_fields_reach_the_mirror(google: GoogleWorld, sqlite_store: Store) -> None:
    google.seed(
        {
            "summary": "Session",
            "description": "Second session",
            "location": "Online",
            "status": "tentative",
            "attendees": [
                {"email": "Client@Example.org"},
                {"email": "therapist@example.com", "self": True},
                {"email": "room-1@resource.calendar.google.com", "resource": True},
            ],
            "conferenceData": {
                "conferenceSolution": {"key": {"type": "hangoutsMeet"}, "name": "Google Meet"},
                "entryPoints": [
                    {"entryPointType": "phone", "uri": "tel:+1-555-0100"},
                    {"entryPointType": "video", "uri": "https://meet.google.com/abc-defg-hij"},
                ],
                "conferenceId": "abc-defg-hij",
            },
            **timed(at(2), tz="America/Bogota"),
        }
    )
    conn = _connect(sqlite_store)
    sync_connection(sqlite_store, conn, google.provider())
    (occ,) = list_occurrences(sqlite_store)
    assert (occ.title, occ.description, occ.location) == ("Session", "Second session", "Online")
    assert occ.status is Status.TENTATIVE and occ.timezone == "America/Bogota"
    assert occ.attendees == ("client@example.org", "therapist@example.com")
    assert occ.video_url == "https://meet.google.com/abc-defg-hij"
    assert occ.provider_id and occ.uid == f"{occ.provider_id}@google.com"


def test_a_week_old_cursor_or_another_calendar_lists_everything_again(google: GoogleWorld, sqlite_store: Store) -> None:
    google.seed({"summary": "S", **timed(at(2))})
    conn = _connect(sqlite_store)
    sync_connection(sqlite_store, conn, google.provider())
    google.state.clear_request_log()

    report = sync_connection(sqlite_store, conn, google.provider(now=datetime.now(UTC) + timedelta(days=8)))
    (request,) = google.list_requests()
    assert "timeMin" in request["query"] and "syncToken" not in request["query"]
    assert report.changes == 0 and not report.full_resync

    google.state.add_calendar("work@example.com", time_zone=MADRID)
    google.state.clear_request_log()
    cursor = _cursor(sqlite_store, conn)
    pages = list(google.provider(calendar_id="work@example.com").list_changes(cursor))
    assert pages[-1].complete and google.state.requests()[0]["path"].endswith("/work@example.com/events")


# -- the mapping on its own: what the emulator cannot produce ------------------------------------


def test_a_tombstone_is_named_through_the_identity_index() -> None:
    index = IdentityIndex()
    start = {"dateTime": "2026-12-01T18:00:00+01:00", "timeZone": MADRID}
    live = [
        {"id": "imported1", "iCalUID": "abc@therapist.app", **timed(at(1))},
        {"id": "native1", "iCalUID": "native1@google.com", **timed(at(1))},
        {"id": "ser_20261201T170000Z", "iCalUID": "series@other.app", "recurringEventId": "ser",
         "originalStartTime": start, "start": start, "end": start},
    ]  # fmt: skip
    changes = page_changes(live, MADRID, index)
    assert len(changes.upserts) == 3
    assert index.uids == {"imported1": "abc@therapist.app", "ser": "series@other.app"} and index.series == {"ser"}

    gone = page_changes(
        [
            {"id": "imported1", "status": "cancelled"},
            {"id": "native1", "status": "cancelled"},
            {
                "id": "ser_20261201T170000Z",
                "status": "cancelled",
                "recurringEventId": "ser",
                "originalStartTime": start,
            },
        ],
        MADRID,
        index,
    )
    assert gone.removals == [
        OccurrenceKey("abc@therapist.app", ""),
        OccurrenceKey("native1@google.com", ""),
        OccurrenceKey("series@other.app", "2026-12-01T17:00:00+00:00"),
    ]
    assert "imported1" not in index.uids and index.series == {"ser"}  # the series itself lives on
    assert IdentityIndex.from_json(index.as_json()) == index


def test_a_bare_tombstone_of_a_whole_series_marks_the_series_for_relisting() -> None:
    index = IdentityIndex(series={"ser"}, uids={"ser": "series@other.app"})
    changes = page_changes([{"id": "ser", "status": "cancelled"}], MADRID, index)
    assert changes.removals == [] and changes.series == {"ser": "series@other.app"}


def test_a_series_deleted_by_its_master_id_alone_is_cancelled(google: GoogleWorld, sqlite_store: Store) -> None:
    # With singleEvents=true Google's report of a deleted series is undocumented; the emulator
    # lists every instance as cancelled. Replaying the token with singleEvents=false makes it
    # answer with the master's bare tombstone instead: the other shape Google may send.
    series = _weekly(google, _local(3), count=3)
    google.seed({"summary": "Stays", **timed(at(4))})
    conn = _connect(sqlite_store)
    sync_connection(sqlite_store, conn, google.provider())
    cursor = GoogleCursor.loads(_cursor(sqlite_store, conn))
    assert cursor is not None and cursor.index.series == {series["id"]}
    from core.store.models import Connection

    with sqlite_store.session() as session:
        session.get_one(Connection, conn).cursor = replace(
            cursor, params={**cursor.params, "singleEvents": False}
        ).dumps()
    google.state.cancel_event("primary", series["id"])
    google.state.clear_request_log()

    report = sync_connection(sqlite_store, conn, google.provider())

    assert report.cancelled == 3 and not report.full_resync
    assert [o.title for o in list_occurrences(sqlite_store)] == ["Stays"]
    paths = [r["path"] for r in google.state.requests()]
    assert paths == [EVENTS_PATH, f"{EVENTS_PATH}/{series['id']}/instances"]


def test_a_series_moved_or_cut_short_loses_the_instances_it_no_longer_has(
    google: GoogleWorld, sqlite_store: Store
) -> None:
    moved = _weekly(google, _local(3), count=3, title="Moved")
    cut = _weekly(google, _local(4), count=4, title="Cut")
    conn = _connect(sqlite_store)
    sync_connection(sqlite_store, conn, google.provider())

    # The whole series two hours earlier: every original slot changes.
    google.state.move_event("primary", moved["id"], {"dateTime": _local(3, 16), "timeZone": MADRID})
    # "This and following events" from the third instance: the series ends after the second.
    until = (datetime.now(UTC) + timedelta(days=4 + 8)).strftime("%Y%m%dT000000Z")
    google.state.edit_event("primary", cut["id"], {"recurrence": [f"RRULE:FREQ=WEEKLY;UNTIL={until}"]})
    report = sync_connection(sqlite_store, conn, google.provider())

    assert (report.created, report.cancelled, report.full_resync) == (3, 5, False)
    live = sorted((o.title, o.start) for o in list_occurrences(sqlite_store))
    assert [t for t, _ in live].count("Moved") == 3 and [t for t, _ in live].count("Cut") == 2
    assert all(s.astimezone(ZoneInfo(MADRID)).hour == 16 for t, s in live if t == "Moved")
    again = sync_connection(sqlite_store, conn, google.provider())
    assert again.changes == 0


def test_a_series_turned_into_a_single_event_keeps_only_that_event(google: GoogleWorld, sqlite_store: Store) -> None:
    series = _weekly(google, _local(3), count=3)
    conn = _connect(sqlite_store)
    sync_connection(sqlite_store, conn, google.provider())
    google.state.edit_event("primary", series["id"], {"recurrence": None})

    sync_connection(sqlite_store, conn, google.provider())

    (single,) = list_occurrences(sqlite_store)
    assert single.recurrence_id == "" and single.uid == series["iCalUID"]
    assert len(list_occurrences(sqlite_store, include_cancelled=True)) == 4


def test_an_all_day_original_start_is_a_date() -> None:
    occ = to_occurrence(
        {
            "id": "s_20261201",
            "iCalUID": "s@google.com",
            "recurringEventId": "s",
            "originalStartTime": {"date": "2026-12-01"},
            "start": {"date": "2026-12-02"},
            "end": {"date": "2026-12-03"},
        },
        MADRID,
    )
    assert occ is not None and occ.key == OccurrenceKey("s@google.com", date(2026, 12, 1).isoformat())
    assert occ.all_day and occ.start == datetime(2026, 12, 2, tzinfo=UTC)
