"""Recurrence expansion of the emulator (pure functions) and seeding exceptions directly."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from sandbox.google import GoogleState
from sandbox.google.errors import ApiError
from sandbox.google.times import EventTime, expand

MADRID = ZoneInfo("Europe/Madrid")


def _local(occurrences: list[EventTime]) -> list[str]:
    return [o.instant(MADRID).astimezone(MADRID).strftime("%Y-%m-%d %H:%M") for o in occurrences]


def test_until_in_utc_exdate_with_tzid_and_rdate() -> None:
    start = EventTime.parse({"dateTime": "2026-10-20T18:00:00", "timeZone": "Europe/Madrid"}, "start")
    occurrences = list(
        expand(
            start,
            [
                "RRULE:FREQ=WEEKLY;UNTIL=20261110T170000Z",
                "EXDATE;TZID=Europe/Madrid:20261027T180000",
                "RDATE;TZID=Europe/Madrid:20261029T120000",
            ],
            MADRID,
            until=None,
            limit=100,
        )
    )
    assert _local(occurrences) == ["2026-10-20 18:00", "2026-10-29 12:00", "2026-11-03 18:00", "2026-11-10 18:00"]
    assert occurrences[-1].instance_suffix() == "20261110T170000Z"


def test_exdate_in_utc_and_limits() -> None:
    start = EventTime.parse({"dateTime": "2026-03-24T18:00:00+01:00", "timeZone": "Europe/Madrid"}, "start")
    occurrences = list(
        expand(start, ["RRULE:FREQ=WEEKLY", "EXDATE:20260331T160000Z"], MADRID, until=None, limit=3)
    )  # 2026-03-31 18:00 is CEST (+02:00) = 16:00Z: excluded
    assert _local(occurrences) == ["2026-03-24 18:00", "2026-04-07 18:00", "2026-04-14 18:00"]
    bounded = list(
        expand(start, ["RRULE:FREQ=DAILY"], MADRID, until=datetime(2026, 3, 26, 17, 0, tzinfo=UTC), limit=100)
    )
    assert _local(bounded) == ["2026-03-24 18:00", "2026-03-25 18:00"]  # timeMax is exclusive


def test_bad_rules_are_400() -> None:
    start = EventTime.parse({"dateTime": "2026-03-24T18:00:00", "timeZone": "Europe/Madrid"}, "start")
    with pytest.raises(ApiError) as caught:
        list(expand(start, ["RRULE:FREQ=SOMETIMES"], MADRID, until=None, limit=5))
    assert caught.value.code == 400


def test_seeding_exceptions_directly() -> None:
    state = GoogleState(seed=1)
    master = state.seed_event(
        "primary",
        {
            "summary": "Weekly",
            "start": {"dateTime": "2026-11-02T10:00:00", "timeZone": "Europe/Madrid"},
            "end": {"dateTime": "2026-11-02T10:50:00", "timeZone": "Europe/Madrid"},
            "recurrence": ["RRULE:FREQ=WEEKLY;COUNT=3"],
        },
    )
    original = {"dateTime": "2026-11-09T10:00:00+01:00", "timeZone": "Europe/Madrid"}
    moved = state.seed_event(
        "primary",
        {
            "recurringEventId": master["id"],
            "originalStartTime": original,
            "start": {"dateTime": "2026-11-10T10:00:00+01:00"},
            "end": {"dateTime": "2026-11-10T10:50:00+01:00"},
        },
    )
    assert moved["id"] == f"{master['id']}_20261109T090000Z"
    cancelled = state.seed_event(
        "primary",
        {
            "recurringEventId": master["id"],
            "originalStartTime": {"dateTime": "2026-11-16T10:00:00+01:00"},
            "status": "cancelled",
        },
    )
    assert cancelled["status"] == "cancelled" and cancelled["recurringEventId"] == master["id"]
    listed = state.list_events("primary", [("singleEvents", "true")])["items"]
    assert [i["start"]["dateTime"] for i in listed] == ["2026-11-02T10:00:00+01:00", "2026-11-10T10:00:00+01:00"]
    state.close()
