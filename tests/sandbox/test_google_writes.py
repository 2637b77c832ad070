"""insert / patch / update / delete through the real client: etags, If-Match, ids, Meet creation."""

from __future__ import annotations

from typing import Any

import pytest
from googleapiclient.errors import HttpError

from sandbox.google import RunningEmulator
from tests.sandbox.conftest import error_reason, timed


def _insert(service: Any, **extra: Any) -> dict[str, Any]:
    body = {"summary": "Session", **timed("2026-11-02T10:00:00", "2026-11-02T10:50:00"), **extra}
    return service.events().insert(calendarId="primary", body=body).execute()


def test_insert_patch_update_delete_with_etags(emulator: RunningEmulator, service: Any) -> None:
    created = _insert(service, description="first")
    assert created["status"] == "confirmed" and created["sequence"] == 0
    assert created["iCalUID"].endswith("@google.com") and created["created"] and created["updated"]

    patched = service.events().patch(calendarId="primary", eventId=created["id"], body={"summary": "Moved"}).execute()
    assert patched["summary"] == "Moved" and patched["description"] == "first"  # patch keeps other fields
    assert patched["etag"] != created["etag"] and patched["updated"] > created["updated"]
    assert patched["sequence"] == 0  # a retitle is not a significant change

    moved = service.events().patch(
        calendarId="primary", eventId=created["id"], body={"start": {"dateTime": "2026-11-02T11:00:00+01:00"},
                                                           "end": {"dateTime": "2026-11-02T11:50:00+01:00"}}
    ).execute()  # fmt: skip
    assert moved["start"] == {"dateTime": "2026-11-02T11:00:00+01:00", "timeZone": "Europe/Madrid"}
    assert moved["sequence"] == 1

    replaced = (
        service.events()
        .update(
            calendarId="primary",
            eventId=created["id"],
            body={"summary": "Replaced", **timed("2026-11-02T12:00:00", "2026-11-02T12:50:00")},
        )
        .execute()
    )
    assert replaced["summary"] == "Replaced" and "description" not in replaced  # update replaces
    assert replaced["status"] == "confirmed" and replaced["reminders"] == {"useDefault": True}
    assert replaced["iCalUID"] == created["iCalUID"] and replaced["id"] == created["id"]

    # If-Match with a stale etag -> 412; with the current one the write goes through
    stale = service.events().patch(calendarId="primary", eventId=created["id"], body={"summary": "Stale"})
    stale.headers["If-Match"] = created["etag"]
    with pytest.raises(HttpError) as caught:
        stale.execute()
    assert caught.value.status_code == 412 and error_reason(caught.value) == "conditionNotMet"

    fresh = service.events().patch(calendarId="primary", eventId=created["id"], body={"summary": "Fresh"})
    fresh.headers["If-Match"] = replaced["etag"]
    assert fresh.execute()["summary"] == "Fresh"

    stale_delete = service.events().delete(calendarId="primary", eventId=created["id"])
    stale_delete.headers["If-Match"] = replaced["etag"]
    with pytest.raises(HttpError) as caught:
        stale_delete.execute()
    assert caught.value.status_code == 412

    assert service.events().delete(calendarId="primary", eventId=created["id"]).execute() == ""
    tombstone = service.events().get(calendarId="primary", eventId=created["id"]).execute()
    assert tombstone["status"] == "cancelled"
    with pytest.raises(HttpError) as caught:
        service.events().delete(calendarId="primary", eventId=created["id"]).execute()
    assert caught.value.status_code == 410 and error_reason(caught.value) == "deleted"

    sent = [r for r in emulator.state.requests("/calendar/v3/") if r["if_match"]]
    assert [r["method"] for r in sent] == ["PATCH", "PATCH", "DELETE"]


def test_client_supplied_ids_make_inserts_idempotent(service: Any) -> None:
    event_id = "alliance0123456789abcdefuv"
    first = _insert(service, id=event_id)
    assert first["id"] == event_id
    with pytest.raises(HttpError) as caught:
        _insert(service, id=event_id)
    assert caught.value.status_code == 409 and error_reason(caught.value) == "duplicate"
    with pytest.raises(HttpError) as caught:
        _insert(service, id="Not_Base32hex!")
    assert caught.value.status_code == 400


def test_recurring_events_need_a_time_zone(service: Any) -> None:
    with pytest.raises(HttpError) as caught:
        service.events().insert(
            calendarId="primary",
            body={
                "summary": "Weekly",
                "start": {"dateTime": "2026-11-02T10:00:00+01:00"},
                "end": {"dateTime": "2026-11-02T10:50:00+01:00"},
                "recurrence": ["RRULE:FREQ=WEEKLY"],
            },
        ).execute()
    assert caught.value.status_code == 400
    assert "Missing time zone definition for start time" in str(caught.value)
    with pytest.raises(HttpError) as caught:
        _insert(service, end={"dateTime": "2026-11-02T09:00:00", "timeZone": "Europe/Madrid"})
    assert error_reason(caught.value) == "timeRangeEmpty"


def test_patching_an_instance_creates_an_exception(emulator: RunningEmulator, service: Any) -> None:
    master = service.events().insert(
        calendarId="primary",
        body={"summary": "Weekly", **timed("2026-11-02T10:00:00", "2026-11-02T10:50:00"),
              "recurrence": ["RRULE:FREQ=WEEKLY;COUNT=4"]},
    ).execute()  # fmt: skip
    instance_id = f"{master['id']}_20261109T090000Z"
    instance = service.events().get(calendarId="primary", eventId=instance_id).execute()
    changed = (
        service.events().patch(calendarId="primary", eventId=instance_id, body={"summary": "Weekly (online)"}).execute()
    )
    assert changed["id"] == instance_id and changed["etag"] != instance["etag"]
    assert changed["recurringEventId"] == master["id"]
    assert changed["originalStartTime"]["dateTime"] == "2026-11-09T10:00:00+01:00"
    assert service.events().delete(calendarId="primary", eventId=f"{master['id']}_20261116T090000Z").execute() == ""
    listed = service.events().list(calendarId="primary").execute()["items"]
    assert {i["id"]: i["status"] for i in listed} == {
        master["id"]: "confirmed",
        instance_id: "confirmed",
        f"{master['id']}_20261116T090000Z": "cancelled",
    }


def test_meet_creation_is_asynchronous(emulator: RunningEmulator, service: Any) -> None:
    request = {"requestId": "req-1", "conferenceSolutionKey": {"type": "hangoutsMeet"}}
    ignored = _insert(service, conferenceData={"createRequest": request})
    assert "conferenceData" not in ignored  # conferenceDataVersion=0 ignores conferenceData

    created = service.events().insert(
        calendarId="primary",
        conferenceDataVersion=1,
        body={"summary": "Online session", **timed("2026-11-03T10:00:00", "2026-11-03T10:50:00"),
              "conferenceData": {"createRequest": request}},
    ).execute()  # fmt: skip
    assert created["conferenceData"]["createRequest"]["status"] == {"statusCode": "pending"}
    assert "hangoutLink" not in created

    later = service.events().get(calendarId="primary", eventId=created["id"]).execute()
    conference = later["conferenceData"]
    assert conference["createRequest"]["status"] == {"statusCode": "success"}
    assert conference["conferenceSolution"]["key"] == {"type": "hangoutsMeet"}
    video = next(e for e in conference["entryPoints"] if e["entryPointType"] == "video")
    assert video["uri"].startswith("https://meet.google.com/") and later["hangoutLink"] == video["uri"]
    assert later["etag"] != created["etag"]  # the conference arriving is a change like any other

    # the same requestId again is ignored; a patch at version 0 keeps the conference
    again = service.events().patch(
        calendarId="primary", eventId=created["id"], conferenceDataVersion=1,
        body={"conferenceData": {"createRequest": request}},
    ).execute()  # fmt: skip
    assert again["hangoutLink"] == later["hangoutLink"]
    retitled = service.events().patch(calendarId="primary", eventId=created["id"], body={"summary": "x"}).execute()
    assert retitled["hangoutLink"] == later["hangoutLink"]


def test_meet_creation_failure(emulator: RunningEmulator, service: Any) -> None:
    emulator.state.settings.meet_outcome = "failure"
    created = service.events().insert(
        calendarId="primary",
        conferenceDataVersion=1,
        body={"summary": "Online", **timed("2026-11-03T10:00:00", "2026-11-03T10:50:00"),
              "conferenceData": {"createRequest": {"requestId": "r2"}}},
    ).execute()  # fmt: skip
    assert emulator.state.complete_conferences() == 1
    later = service.events().get(calendarId="primary", eventId=created["id"]).execute()
    assert later["conferenceData"]["createRequest"]["status"]["statusCode"] == "failure"
    assert "conferenceSolution" not in later["conferenceData"] and "hangoutLink" not in later


def test_unknown_calendar_and_event_are_404(service: Any) -> None:
    for call in (
        service.events().list(calendarId="nobody@example.com"),
        service.events().get(calendarId="primary", eventId="doesnotexist0"),
    ):
        with pytest.raises(HttpError) as caught:
            call.execute()
        assert caught.value.status_code == 404 and error_reason(caught.value) == "notFound"
