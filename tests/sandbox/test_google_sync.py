"""events.list against the emulator with the real googleapiclient: paging, sync tokens, recurrence."""

from __future__ import annotations

from typing import Any

import pytest
from googleapiclient.errors import HttpError

from sandbox.google import RunningEmulator
from tests.sandbox.conftest import error_reason, list_all, timed


def _seed_sessions(emu: RunningEmulator, count: int) -> list[dict[str, Any]]:
    return emu.state.seed_events(
        "primary",
        [
            {"summary": f"Session {n}", **timed(f"2026-11-{n + 1:02d}T10:00:00", f"2026-11-{n + 1:02d}T10:50:00")}
            for n in range(count)
        ],
    )


def test_full_listing_pages_and_sync_token_only_on_last_page(emulator: RunningEmulator, service: Any) -> None:
    seeded = _seed_sessions(emulator, 7)
    items, pages = list_all(service, maxResults=3)

    assert [len(p["items"]) for p in pages] == [3, 3, 1]
    assert all("nextSyncToken" not in p and "nextPageToken" in p for p in pages[:-1])
    assert "nextSyncToken" in pages[-1] and "nextPageToken" not in pages[-1]
    assert sorted(i["id"] for i in items) == sorted(e["id"] for e in seeded)
    assert pages[0]["kind"] == "calendar#events" and pages[0]["timeZone"] == "Europe/Madrid"
    for item in items:  # the fields a mirror keys on are always present
        assert item["iCalUID"] and item["etag"].startswith('"') and item["updated"].endswith("Z")
        assert item["start"]["dateTime"].endswith("+01:00")

    # the request log shows what the client sent: the page tokens, in order
    sent = [r["query"] for r in emulator.state.requests("/calendar/v3/calendars/primary/events", "GET")]
    assert len(sent) == 3
    assert "pageToken" not in sent[0]
    assert sent[1]["pageToken"] == [pages[0]["nextPageToken"]]
    assert sent[2]["pageToken"] == [pages[1]["nextPageToken"]]
    assert all(q["maxResults"] == ["3"] for q in sent)


def test_a_listing_shows_the_calendar_as_it_was_when_it_began(emulator: RunningEmulator, service: Any) -> None:
    """Later pages are rendered only when asked for, but still show the events as the first request saw them;
    what changed meanwhile comes with the listing's sync token."""
    seeded = _seed_sessions(emulator, 4)
    first = service.events().list(calendarId="primary", maxResults=2).execute()
    later_ids = [e["id"] for e in seeded if e["id"] not in {i["id"] for i in first["items"]}]
    retitled, cancelled = later_ids
    emulator.state.retitle_event("primary", retitled, "Session (renamed meanwhile)")
    emulator.state.cancel_event("primary", cancelled)

    second = service.events().list(calendarId="primary", maxResults=2, pageToken=first["nextPageToken"]).execute()

    shown = {i["id"]: i for i in second["items"]}
    assert set(shown) == {retitled, cancelled}
    assert shown[retitled]["summary"] != "Session (renamed meanwhile)"
    assert shown[cancelled]["status"] == "confirmed"
    changes = service.events().list(calendarId="primary", syncToken=second["nextSyncToken"]).execute()
    changed = {i["id"]: i for i in changes["items"]}
    assert changed[retitled]["summary"] == "Session (renamed meanwhile)"
    assert changed[cancelled]["status"] == "cancelled"


def test_incremental_listing_after_edits(emulator: RunningEmulator, service: Any) -> None:
    seeded = _seed_sessions(emulator, 4)
    _, pages = list_all(service)
    token = pages[-1]["nextSyncToken"]

    nothing = service.events().list(calendarId="primary", syncToken=token).execute()
    assert nothing["items"] == [] and nothing["nextSyncToken"]

    moved, retitled, deleted, _ = (e["id"] for e in seeded)
    emulator.state.move_event("primary", moved, {"dateTime": "2026-11-01T12:00:00", "timeZone": "Europe/Madrid"})
    emulator.state.retitle_event("primary", retitled, "Session (new client)")
    emulator.state.cancel_event("primary", deleted)
    added = emulator.state.seed_event(
        "primary", {"summary": "Intake", **timed("2026-11-20T09:00:00", "2026-11-20T10:00:00")}
    )

    changes, pages = list_all(service, syncToken=nothing["nextSyncToken"], maxResults=2)
    assert len(pages) == 2 and "nextSyncToken" in pages[-1] and "nextSyncToken" not in pages[0]
    by_id = {c["id"]: c for c in changes}
    assert set(by_id) == {moved, retitled, deleted, added["id"]}
    assert by_id[moved]["start"]["dateTime"] == "2026-11-01T12:00:00+01:00"
    assert by_id[moved]["end"]["dateTime"] == "2026-11-01T12:50:00+01:00"
    assert by_id[moved]["sequence"] == 1
    assert by_id[retitled]["summary"] == "Session (new client)"
    assert by_id[deleted] == {
        "kind": "calendar#event",
        "etag": by_id[deleted]["etag"],
        "id": deleted,
        "status": "cancelled",
    }
    # every change got a new etag
    old_etags = {e["id"]: e["etag"] for e in seeded}
    assert all(by_id[i]["etag"] != old_etags[i] for i in (moved, retitled, deleted))

    # a full listing without showDeleted hides the deleted event; with it, the tombstone shows
    live, _ = list_all(service)
    assert deleted not in {i["id"] for i in live}
    with_deleted, _ = list_all(service, showDeleted=True)
    assert deleted in {i["id"] for i in with_deleted}


def test_expired_sync_token_is_410_full_sync_required(emulator: RunningEmulator, service: Any) -> None:
    _seed_sessions(emulator, 2)
    _, pages = list_all(service)
    token = pages[-1]["nextSyncToken"]
    assert emulator.state.expire_sync_tokens() >= 1

    with pytest.raises(HttpError) as caught:
        service.events().list(calendarId="primary", syncToken=token).execute()
    assert caught.value.status_code == 410
    assert error_reason(caught.value) == "fullSyncRequired"

    # a fresh full sync yields a working token again
    _, pages = list_all(service)
    assert service.events().list(calendarId="primary", syncToken=pages[-1]["nextSyncToken"]).execute()["items"] == []


@pytest.mark.parametrize(
    "params",
    [
        {"timeMin": "2026-01-01T00:00:00Z"},
        {"timeMax": "2027-01-01T00:00:00Z"},
        {"orderBy": "updated"},
        {"q": "session"},
        {"updatedMin": "2026-01-01T00:00:00Z"},
        {"iCalUID": "x@google.com"},
        {"privateExtendedProperty": "alliance=1"},
        {"showDeleted": False},
    ],
)
def test_parameters_not_allowed_with_sync_token(
    emulator: RunningEmulator, service: Any, params: dict[str, Any]
) -> None:
    _, pages = list_all(service)
    with pytest.raises(HttpError) as caught:
        service.events().list(calendarId="primary", syncToken=pages[-1]["nextSyncToken"], **params).execute()
    assert caught.value.status_code == 400


def test_order_by_start_time_needs_single_events_and_range_must_not_be_empty(service: Any) -> None:
    with pytest.raises(HttpError) as caught:
        service.events().list(calendarId="primary", orderBy="startTime").execute()
    assert caught.value.status_code == 400
    with pytest.raises(HttpError) as caught:
        service.events().list(
            calendarId="primary", timeMin="2026-02-01T00:00:00Z", timeMax="2026-01-01T00:00:00Z"
        ).execute()
    assert error_reason(caught.value) == "timeRangeEmpty"


def _weekly_series(emu: RunningEmulator) -> dict[str, Any]:
    """Weekly Tuesday 18:00 Madrid, six sessions across the end of DST (2026-10-25)."""
    return emu.state.seed_event(
        "primary",
        {
            "summary": "Weekly therapy",
            **timed("2026-10-06T18:00:00", "2026-10-06T18:50:00"),
            "recurrence": ["RRULE:FREQ=WEEKLY;BYDAY=TU;COUNT=6"],
        },
    )


def test_single_events_expansion_with_moved_and_cancelled_exceptions_across_dst(
    emulator: RunningEmulator, service: Any
) -> None:
    master = _weekly_series(emulator)
    mid = master["id"]
    moved = emulator.state.move_event(
        "primary", f"{mid}_20261013T160000Z", {"dateTime": "2026-10-15T09:00:00", "timeZone": "Europe/Madrid"}
    )
    emulator.state.cancel_event("primary", f"{mid}_20261103T170000Z")

    items, _ = list_all(service, singleEvents=True, orderBy="startTime")
    starts = [i["start"]["dateTime"] for i in items]
    assert starts == [
        "2026-10-06T18:00:00+02:00",
        "2026-10-15T09:00:00+02:00",  # moved
        "2026-10-20T18:00:00+02:00",
        "2026-10-27T18:00:00+01:00",  # after the DST change: still 18:00 local
        "2026-11-10T18:00:00+01:00",  # 2026-11-03 was cancelled
    ]
    assert all(i["recurringEventId"] == mid for i in items)
    assert all(i["iCalUID"] == master["iCalUID"] for i in items)
    assert len({i["id"] for i in items}) == 5
    moved_item = items[1]
    assert moved_item["id"] == moved["id"] == f"{mid}_20261013T160000Z"
    assert moved_item["originalStartTime"] == {"dateTime": "2026-10-13T18:00:00+02:00", "timeZone": "Europe/Madrid"}
    assert "recurrence" not in moved_item

    # showDeleted brings the cancelled instance back, as a cancelled instance
    with_deleted, _ = list_all(service, singleEvents=True, showDeleted=True)
    cancelled = [i for i in with_deleted if i["status"] == "cancelled"]
    assert [c["id"] for c in cancelled] == [f"{mid}_20261103T170000Z"]
    assert cancelled[0]["originalStartTime"]["dateTime"] == "2026-11-03T18:00:00+01:00"

    # without singleEvents: the master plus both exceptions (the cancelled one even without showDeleted)
    raw, _ = list_all(service)
    by_id = {i["id"]: i for i in raw}
    assert set(by_id) == {mid, f"{mid}_20261013T160000Z", f"{mid}_20261103T170000Z"}
    assert by_id[mid]["recurrence"] == ["RRULE:FREQ=WEEKLY;BYDAY=TU;COUNT=6"]
    assert by_id[f"{mid}_20261103T170000Z"]["status"] == "cancelled"
    assert by_id[f"{mid}_20261103T170000Z"]["recurringEventId"] == mid

    # time window on expanded instances: timeMin bounds the end, timeMax the start (both exclusive)
    window, _ = list_all(service, singleEvents=True, timeMin="2026-10-20T16:49:00Z", timeMax="2026-10-27T17:00:00Z")
    assert [i["start"]["dateTime"] for i in window] == ["2026-10-20T18:00:00+02:00"]


def test_instances_endpoint(emulator: RunningEmulator, service: Any) -> None:
    master = _weekly_series(emulator)
    mid = master["id"]
    emulator.state.retitle_event("primary", f"{mid}_20261020T160000Z", "Weekly therapy (late)")
    emulator.state.cancel_event("primary", f"{mid}_20261027T170000Z")

    page1 = service.events().instances(calendarId="primary", eventId=mid, maxResults=3).execute()
    page2 = (
        service.events()
        .instances(calendarId="primary", eventId=mid, maxResults=3, pageToken=page1["nextPageToken"])
        .execute()
    )
    instances = page1["items"] + page2["items"]
    assert len(instances) == 5 and "nextPageToken" not in page2
    assert [i["summary"] for i in instances].count("Weekly therapy (late)") == 1

    everything = service.events().instances(calendarId="primary", eventId=mid, showDeleted=True).execute()["items"]
    assert len(everything) == 6
    assert [i["status"] for i in everything].count("cancelled") == 1

    one = service.events().get(calendarId="primary", eventId=f"{mid}_20261110T170000Z").execute()
    assert one["recurringEventId"] == mid and one["start"]["dateTime"] == "2026-11-10T18:00:00+01:00"
    with pytest.raises(HttpError) as caught:
        service.events().get(calendarId="primary", eventId=f"{mid}_20261111T170000Z").execute()
    assert caught.value.status_code == 404


def test_series_changes_on_incremental_sync_with_single_events(emulator: RunningEmulator, service: Any) -> None:
    master = _weekly_series(emulator)
    mid = master["id"]
    _, pages = list_all(service, singleEvents=True)
    token = pages[-1]["nextSyncToken"]

    emulator.state.cancel_event("primary", f"{mid}_20261020T160000Z")
    changes = service.events().list(calendarId="primary", singleEvents=True, syncToken=token).execute()
    assert [(c["id"], c["status"]) for c in changes["items"]] == [(f"{mid}_20261020T160000Z", "cancelled")]

    emulator.state.cancel_event("primary", mid)  # the therapist deletes the whole series
    gone = service.events().list(calendarId="primary", singleEvents=True, syncToken=changes["nextSyncToken"]).execute()
    assert len(gone["items"]) == 6 and {c["status"] for c in gone["items"]} == {"cancelled"}
    raw = service.events().list(calendarId="primary", syncToken=changes["nextSyncToken"]).execute()["items"]
    assert [(c["id"], c["status"]) for c in raw] == [(mid, "cancelled")]  # the exception was already cancelled


def test_all_day_events(emulator: RunningEmulator, service: Any) -> None:
    retreat = emulator.state.seed_event(
        "primary", {"summary": "Training retreat", "start": {"date": "2026-11-05"}, "end": {"date": "2026-11-07"}}
    )
    yearly = emulator.state.seed_event(
        "primary",
        {
            "summary": "Supervision day",
            "start": {"date": "2026-11-02"},
            "end": {"date": "2026-11-03"},
            "recurrence": ["RRULE:FREQ=MONTHLY;COUNT=3", "EXDATE;VALUE=DATE:20261202"],
        },
    )
    got = service.events().get(calendarId="primary", eventId=retreat["id"]).execute()
    assert got["start"] == {"date": "2026-11-05"} and got["end"] == {"date": "2026-11-07"}

    items, _ = list_all(service, singleEvents=True, orderBy="startTime")
    assert [(i["summary"], i["start"]) for i in items] == [
        ("Supervision day", {"date": "2026-11-02"}),
        ("Training retreat", {"date": "2026-11-05"}),
        ("Supervision day", {"date": "2027-01-02"}),
    ]
    assert items[2]["id"] == f"{yearly['id']}_20270102"
    assert items[2]["originalStartTime"] == {"date": "2027-01-02"}

    # timeMin/timeMax against all-day events use the calendar's zone
    in_window, _ = list_all(
        service, singleEvents=True, timeMin="2026-11-06T12:00:00+01:00", timeMax="2026-11-30T00:00:00+01:00"
    )
    assert [i["summary"] for i in in_window] == ["Training retreat"]


def test_short_pages_still_end_with_a_sync_token(emulator: RunningEmulator, service: Any) -> None:
    _seed_sessions(emulator, 5)
    emulator.state.settings.max_page_size = 2  # Google may return fewer items than maxResults
    items, pages = list_all(service, maxResults=250)
    assert len(items) == 5 and len(pages) == 3 and "nextSyncToken" in pages[-1]


def test_filters_and_time_zone_parameter(emulator: RunningEmulator, service: Any) -> None:
    emulator.state.seed_event(
        "primary",
        {
            "summary": "Alliance session",
            **timed("2026-11-02T10:00:00", "2026-11-02T10:50:00"),
            "extendedProperties": {"private": {"alliance": "1"}},
        },
    )
    emulator.state.seed_event("primary", {"summary": "Dentist", **timed("2026-11-03T10:00:00", "2026-11-03T11:00:00")})
    tagged = service.events().list(calendarId="primary", privateExtendedProperty="alliance=1").execute()
    assert [i["summary"] for i in tagged["items"]] == ["Alliance session"]
    assert "nextSyncToken" not in tagged  # filtered listings cannot be continued incrementally
    found = service.events().list(calendarId="primary", q="dentist").execute()
    assert [i["summary"] for i in found["items"]] == ["Dentist"]
    in_utc = service.events().list(calendarId="primary", timeZone="UTC", q="dentist").execute()
    assert in_utc["items"][0]["start"]["dateTime"] == "2026-11-03T09:00:00Z"


def test_empty_pages_with_a_page_token(emulator: RunningEmulator, service: Any) -> None:
    _seed_sessions(emulator, 3)
    emulator.state.settings.empty_pages = True  # "a page may hold no items even when more exist"
    items, pages = list_all(service, maxResults=2)
    assert [len(p["items"]) for p in pages] == [0, 2, 0, 1]
    assert len(items) == 3 and "nextSyncToken" in pages[-1]


def test_long_get_becomes_post_with_method_override(emulator: RunningEmulator, service: Any) -> None:
    emulator.state.seed_event("primary", {"summary": "x" * 2100, **timed("2026-11-02T10:00", "2026-11-02T11:00")})
    found = service.events().list(calendarId="primary", q="x" * 2100).execute()  # URI > 2048 characters
    assert len(found["items"]) == 1
    sent = emulator.state.requests("/calendar/v3/")[-1]
    assert sent["method"] == "GET" and sent["method_override"] and sent["query"]["q"] == ["x" * 2100]


def test_purged_tombstones_force_a_full_sync(emulator: RunningEmulator, service: Any) -> None:
    seeded = _seed_sessions(emulator, 2)
    emulator.state.cancel_event("primary", seeded[0]["id"])
    _, pages = list_all(service, showDeleted=True)
    assert emulator.state.purge_tombstones() == 1
    with pytest.raises(HttpError) as caught:
        service.events().list(calendarId="primary", syncToken=pages[-1]["nextSyncToken"]).execute()
    assert caught.value.status_code == 410
    items, _ = list_all(service, showDeleted=True)
    assert [i["id"] for i in items] == [seeded[1]["id"]]
