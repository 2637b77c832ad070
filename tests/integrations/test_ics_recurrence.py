"""What a therapist sees in the mirror for hand-written RFC 5545 cases and real-world-shaped exports.

Every case goes through the public provider (a file source, a fixed ``ProviderContext.now``), so
the assertions are about what ends up listed: keys, UTC instants, zones, status and fields.
"""

from __future__ import annotations

import logging
import tempfile
import zoneinfo
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.sync import OccurrenceKey, RemoteOccurrence, Status
from integrations.base.protocol import ProviderContext
from integrations.ics import IcsProvider

DATA = Path(__file__).resolve().parents[1] / "data" / "ics"
NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)  # window: 2026-09-27 12:00Z .. 2027-11-26 12:00Z
MADRID = zoneinfo.ZoneInfo("Europe/Madrid")


def ics(body: str, header: str = "") -> str:
    """A VCALENDAR around ``body`` (VEVENT text written with any indentation)."""
    lines = [line.strip() for line in body.strip().splitlines() if line.strip()]
    head = ["BEGIN:VCALENDAR", "VERSION:2.0", "PRODID:-//Alliance tests//EN"]
    head += [line.strip() for line in header.strip().splitlines() if line.strip()]
    return "\r\n".join([*head, *lines, "END:VCALENDAR"]) + "\r\n"


def list_feed(path: Path, now: datetime = NOW, **settings: object) -> dict[OccurrenceKey, RemoteOccurrence]:
    provider = IcsProvider.from_settings({"source": str(path), **settings}, ProviderContext(now=now))
    pages = list(provider.list_changes(None))
    assert all(p.complete for p in pages) and pages[-1].is_last
    found = [o for p in pages for o in p.upserts]
    assert len(found) == len({o.key for o in found}), "a key was listed twice"
    return {o.key: o for o in found}


@pytest.fixture
def listing(tmp_path: Path):
    def run(text: str, now: datetime = NOW, **settings: object) -> dict[OccurrenceKey, RemoteOccurrence]:
        path = tmp_path / "feed.ics"
        path.write_text(text, encoding="utf-8", newline="")
        return list_feed(path, now, **settings)

    return run


def starts(found: dict[OccurrenceKey, RemoteOccurrence], uid: str | None = None) -> list[datetime]:
    return sorted(o.start for o in found.values() if uid is None or o.key.ical_uid == uid)


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


# --- time zones ---------------------------------------------------------------------------------


def test_weekly_madrid_slot_stays_18h_local_across_the_october_dst_change(listing) -> None:
    found = listing(
        ics("""
        BEGIN:VEVENT
        UID:dst@test
        DTSTART;TZID=Europe/Madrid:20261013T180000
        DTEND;TZID=Europe/Madrid:20261013T185000
        RRULE:FREQ=WEEKLY;COUNT=4
        SUMMARY:Session K7Q2
        END:VEVENT
        """)
    )
    assert starts(found) == [utc(2026, 10, 13, 16), utc(2026, 10, 20, 16), utc(2026, 10, 27, 17), utc(2026, 11, 3, 17)]
    for occ in found.values():
        assert occ.start.astimezone(MADRID).time() == time(18, 0)
        assert occ.end - occ.start == timedelta(minutes=50)
        assert occ.timezone == "Europe/Madrid"
        assert occ.key.recurrence_id == occ.start.isoformat()  # the original start, in UTC


def test_windows_zone_names_from_outlook_map_to_iana(listing) -> None:
    found = listing(
        ics("""
        BEGIN:VEVENT
        UID:win@test
        DTSTART;TZID=W. Europe Standard Time:20261020T090000
        DTEND;TZID=W. Europe Standard Time:20261020T095000
        RRULE:FREQ=WEEKLY;COUNT=2
        END:VEVENT
        BEGIN:VEVENT
        UID:paris@test
        DTSTART;TZID=Romance Standard Time:20261030T100000
        DTEND;TZID=Romance Standard Time:20261030T110000
        END:VEVENT
        """)
    )
    assert starts(found, "win@test") == [utc(2026, 10, 20, 7), utc(2026, 10, 27, 8)]
    assert {o.timezone for o in found.values() if o.key.ical_uid == "win@test"} == {"Europe/Berlin"}
    assert found[OccurrenceKey("paris@test")].start == utc(2026, 10, 30, 9)
    assert found[OccurrenceKey("paris@test")].timezone == "Europe/Paris"


def test_outlook_customized_zone_follows_its_vtimezone_rules(listing) -> None:
    found = listing(
        ics(
            """
        BEGIN:VEVENT
        UID:custom@test
        DTSTART;TZID=Customized Time Zone:20261020T180000
        DTEND;TZID=Customized Time Zone:20261020T185000
        RRULE:FREQ=WEEKLY;COUNT=2
        END:VEVENT
        """,
            header="""
        BEGIN:VTIMEZONE
        TZID:Customized Time Zone
        BEGIN:STANDARD
        DTSTART:16010101T030000
        TZOFFSETFROM:+0200
        TZOFFSETTO:+0100
        RRULE:FREQ=YEARLY;INTERVAL=1;BYDAY=-1SU;BYMONTH=10
        END:STANDARD
        BEGIN:DAYLIGHT
        DTSTART:16010101T020000
        TZOFFSETFROM:+0100
        TZOFFSETTO:+0200
        RRULE:FREQ=YEARLY;INTERVAL=1;BYDAY=-1SU;BYMONTH=3
        END:DAYLIGHT
        END:VTIMEZONE
        """,
        )
    )
    assert starts(found) == [utc(2026, 10, 20, 16), utc(2026, 10, 27, 17)]
    # No IANA name can honestly be claimed for an ad-hoc zone; the instants are still right.
    assert {o.timezone for o in found.values()} == {None}


def test_unknown_tzid_is_read_as_utc_with_a_warning_naming_the_zone_only(listing, caplog) -> None:
    caplog.set_level(logging.WARNING, logger="integrations.ics")
    found = listing(
        ics("""
        BEGIN:VEVENT
        UID:mars@test
        DTSTART;TZID=Mars/Olympus_Mons:20261201T180000
        DTEND;TZID=Mars/Olympus_Mons:20261201T185000
        SUMMARY:Session with Jane Doe
        LOCATION:Jane's house
        END:VEVENT
        """)
    )
    occ = found[OccurrenceKey("mars@test")]
    assert (occ.start, occ.end) == (utc(2026, 12, 1, 18), utc(2026, 12, 1, 18, 50))
    assert occ.timezone == "UTC"
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("Mars/Olympus_Mons" in w for w in warnings)
    assert not any("Jane" in r.getMessage() for r in caplog.records)


def test_floating_times_use_x_wr_timezone(listing) -> None:
    found = listing(
        ics(
            """
        BEGIN:VEVENT
        UID:float@test
        DTSTART:20261020T180000
        DTEND:20261020T185000
        RRULE:FREQ=WEEKLY;COUNT=2
        END:VEVENT
        """,
            header="X-WR-TIMEZONE:Europe/Madrid",
        ),
        timezone="America/New_York",  # the feed's own zone wins over the configured fallback
    )
    assert starts(found) == [utc(2026, 10, 20, 16), utc(2026, 10, 27, 17)]
    assert {o.timezone for o in found.values()} == {"Europe/Madrid"}


def test_x_wr_timezone_makes_utc_times_local_like_google_does(listing) -> None:
    # Google writes some series in UTC and means "this wall time in the calendar's zone".
    found = listing(
        ics(
            """
        BEGIN:VEVENT
        UID:utc-series@test
        DTSTART:20261020T160000Z
        DTEND:20261020T165000Z
        RRULE:FREQ=WEEKLY;COUNT=2
        EXDATE:20261103T170000Z
        END:VEVENT
        BEGIN:VEVENT
        UID:utc-single@test
        DTSTART:20261201T090000Z
        DTEND:20261201T095000Z
        END:VEVENT
        """,
            header="X-WR-TIMEZONE:Europe/Madrid",
        )
    )
    assert starts(found, "utc-series@test") == [utc(2026, 10, 20, 16), utc(2026, 10, 27, 17)]
    single = found[OccurrenceKey("utc-single@test")]
    assert (single.start, single.timezone) == (utc(2026, 12, 1, 9), "Europe/Madrid")


def test_an_unknown_x_wr_timezone_is_ignored_with_a_warning(listing, caplog) -> None:
    caplog.set_level(logging.WARNING, logger="integrations.ics")
    found = listing(
        ics(
            """
        BEGIN:VEVENT
        UID:float@test
        DTSTART:20261201T100000
        DTEND:20261201T105000
        END:VEVENT
        """,
            header="X-WR-TIMEZONE:Atlantis/Capital",
        ),
        timezone="Europe/Madrid",
    )
    assert found[OccurrenceKey("float@test")].start == utc(2026, 12, 1, 9)
    assert any("Atlantis/Capital" in r.getMessage() for r in caplog.records)


def test_floating_times_without_x_wr_timezone_use_the_configured_zone(listing) -> None:
    text = ics("""
        BEGIN:VEVENT
        UID:float@test
        DTSTART:20261030T180000
        DTEND:20261030T185000
        RRULE:FREQ=WEEKLY;UNTIL=20261106T180000
        END:VEVENT
        """)
    found = listing(text, timezone="America/New_York")
    # UNTIL is floating too (RFC 5545 3.3.10): the 6 Nov instance at 18:00 New York is included
    # even though 18:00 New York is 23:00 UTC, past "18:00" read as UTC.
    assert starts(found) == [utc(2026, 10, 30, 22), utc(2026, 11, 6, 23)]
    assert {o.timezone for o in found.values()} == {"America/New_York"}


def test_floating_times_fall_back_to_the_context_default_zone(tmp_path: Path) -> None:
    path = tmp_path / "feed.ics"
    path.write_text(
        ics("""
        BEGIN:VEVENT
        UID:float@test
        DTSTART:20261202T100000
        DTEND:20261202T105000
        END:VEVENT
        """)
    )
    provider = IcsProvider.from_settings({"source": str(path)}, ProviderContext(now=NOW, default_timezone="Asia/Tokyo"))
    (occ,) = [o for p in provider.list_changes(None) for o in p.upserts]
    assert occ.start == utc(2026, 12, 2, 1)
    assert occ.timezone == "Asia/Tokyo"


# --- recurrence rules ---------------------------------------------------------------------------


def test_count_until_interval_and_byday(listing) -> None:
    found = listing(
        ics("""
        BEGIN:VEVENT
        UID:count@test
        DTSTART:20261005T090000Z
        DURATION:PT50M
        RRULE:FREQ=DAILY;COUNT=3
        END:VEVENT
        BEGIN:VEVENT
        UID:until@test
        DTSTART;TZID=Europe/Madrid:20261006T100000
        DTEND;TZID=Europe/Madrid:20261006T105000
        RRULE:FREQ=WEEKLY;UNTIL=20261020T080000Z
        END:VEVENT
        BEGIN:VEVENT
        UID:interval@test
        DTSTART;TZID=Europe/Madrid:20261002T130000
        DTEND;TZID=Europe/Madrid:20261002T140000
        RRULE:FREQ=WEEKLY;INTERVAL=2;COUNT=3
        END:VEVENT
        BEGIN:VEVENT
        UID:byday@test
        DTSTART;TZID=Europe/Madrid:20261005T170000
        DTEND;TZID=Europe/Madrid:20261005T175000
        RRULE:FREQ=WEEKLY;BYDAY=MO,TH;COUNT=4
        END:VEVENT
        """)
    )
    assert starts(found, "count@test") == [utc(2026, 10, 5, 9), utc(2026, 10, 6, 9), utc(2026, 10, 7, 9)]
    # UNTIL is inclusive: 20 Oct 10:00 Madrid is exactly 08:00Z.
    assert starts(found, "until@test") == [utc(2026, 10, 6, 8), utc(2026, 10, 13, 8), utc(2026, 10, 20, 8)]
    assert starts(found, "interval@test") == [utc(2026, 10, 2, 11), utc(2026, 10, 16, 11), utc(2026, 10, 30, 12)]
    assert [d.astimezone(MADRID).strftime("%a %d %H:%M") for d in starts(found, "byday@test")] == [
        "Mon 05 17:00",
        "Thu 08 17:00",
        "Mon 12 17:00",
        "Thu 15 17:00",
    ]


def test_rdate_and_exdate(listing) -> None:
    found = listing(
        ics("""
        BEGIN:VEVENT
        UID:rx@test
        DTSTART;TZID=Europe/Madrid:20261006T180000
        DTEND;TZID=Europe/Madrid:20261006T185000
        RRULE:FREQ=WEEKLY;COUNT=4
        EXDATE;TZID=Europe/Madrid:20261013T180000
        RDATE;TZID=Europe/Madrid:20261016T090000
        RDATE;VALUE=PERIOD:20261030T100000Z/PT2H
        END:VEVENT
        """)
    )
    assert starts(found) == [
        utc(2026, 10, 6, 16),
        utc(2026, 10, 16, 7),  # RDATE
        utc(2026, 10, 20, 16),
        utc(2026, 10, 27, 17),
        utc(2026, 10, 30, 10),  # RDATE with a period of its own length
    ]
    assert found[OccurrenceKey("rx@test", "2026-10-30T10:00:00+00:00")].end == utc(2026, 10, 30, 12)
    assert OccurrenceKey("rx@test", "2026-10-13T16:00:00+00:00") not in found


def test_moved_and_cancelled_overrides_keep_their_original_identity(listing) -> None:
    found = listing(
        ics("""
        BEGIN:VEVENT
        UID:series@test
        DTSTART;TZID=Europe/Madrid:20261006T180000
        DTEND;TZID=Europe/Madrid:20261006T185000
        RRULE:FREQ=WEEKLY;COUNT=4
        SUMMARY:Session K7Q2
        END:VEVENT
        BEGIN:VEVENT
        UID:series@test
        RECURRENCE-ID;TZID=Europe/Madrid:20261013T180000
        DTSTART;TZID=Europe/Madrid:20261014T100000
        DTEND;TZID=Europe/Madrid:20261014T105000
        SUMMARY:Session K7Q2 (moved)
        SEQUENCE:1
        END:VEVENT
        BEGIN:VEVENT
        UID:series@test
        RECURRENCE-ID:20261020T160000Z
        DTSTART;TZID=Europe/Madrid:20261020T180000
        DTEND;TZID=Europe/Madrid:20261020T185000
        STATUS:CANCELLED
        SEQUENCE:1
        END:VEVENT
        """)
    )
    assert len(found) == 4
    moved = found[OccurrenceKey("series@test", "2026-10-13T16:00:00+00:00")]
    assert (moved.start, moved.end) == (utc(2026, 10, 14, 8), utc(2026, 10, 14, 8, 50))
    assert moved.title == "Session K7Q2 (moved)"
    assert moved.status is Status.CONFIRMED
    cancelled = found[OccurrenceKey("series@test", "2026-10-20T16:00:00+00:00")]
    assert cancelled.status is Status.CANCELLED
    live = [o for o in found.values() if o.status is Status.CONFIRMED]
    assert sorted(o.key.recurrence_id for o in live) == [
        "2026-10-06T16:00:00+00:00",
        "2026-10-13T16:00:00+00:00",
        "2026-10-27T17:00:00+00:00",
    ]


def test_durations_and_missing_ends(listing) -> None:
    found = listing(
        ics("""
        BEGIN:VEVENT
        UID:duration@test
        DTSTART;TZID=Europe/Madrid:20261201T180000
        DURATION:PT1H15M
        END:VEVENT
        BEGIN:VEVENT
        UID:no-end@test
        DTSTART:20261202T100000Z
        END:VEVENT
        BEGIN:VEVENT
        UID:allday-duration@test
        DTSTART;VALUE=DATE:20261203
        DURATION:P2D
        END:VEVENT
        BEGIN:VEVENT
        UID:allday-no-end@test
        DTSTART;VALUE=DATE:20261210
        END:VEVENT
        """)
    )
    assert found[OccurrenceKey("duration@test")].end - found[OccurrenceKey("duration@test")].start == timedelta(
        hours=1, minutes=15
    )
    no_end = found[OccurrenceKey("no-end@test")]
    assert no_end.start == no_end.end == utc(2026, 12, 2, 10)
    two_days = found[OccurrenceKey("allday-duration@test")]
    assert (two_days.start, two_days.end) == (utc(2026, 12, 3), utc(2026, 12, 5))
    one_day = found[OccurrenceKey("allday-no-end@test")]
    assert (one_day.start, one_day.end, one_day.all_day) == (utc(2026, 12, 10), utc(2026, 12, 11), True)


def test_all_day_events_single_and_recurring(listing) -> None:
    found = listing(
        ics("""
        BEGIN:VEVENT
        UID:holiday@test
        DTSTART;VALUE=DATE:20261208
        DTEND;VALUE=DATE:20261209
        SUMMARY:Office closed
        END:VEVENT
        BEGIN:VEVENT
        UID:weekly-allday@test
        DTSTART;VALUE=DATE:20261204
        DTEND;VALUE=DATE:20261205
        RRULE:FREQ=WEEKLY;COUNT=2
        EXDATE;VALUE=DATE:20261211
        RDATE;VALUE=DATE:20261216
        END:VEVENT
        """)
    )
    holiday = found[OccurrenceKey("holiday@test")]
    assert (holiday.start, holiday.end, holiday.all_day, holiday.timezone) == (
        utc(2026, 12, 8),
        utc(2026, 12, 9),
        True,
        None,
    )
    assert sorted(k.recurrence_id for k in found if k.ical_uid == "weekly-allday@test") == ["2026-12-04", "2026-12-16"]


def test_rrule_without_end_is_expanded_only_to_the_window(listing) -> None:
    found = listing(
        ics("""
        BEGIN:VEVENT
        UID:forever@test
        DTSTART;TZID=Europe/Madrid:20200107T180000
        DTEND;TZID=Europe/Madrid:20200107T185000
        RRULE:FREQ=WEEKLY
        END:VEVENT
        """),
        window_past_days=14,
        window_future_days=28,
    )
    window_start, window_end = NOW - timedelta(days=14), NOW + timedelta(days=28)
    # Tuesdays 18:00 Madrid between 12 Nov 2026 and 24 Dec 2026 12:00Z.
    assert starts(found) == [utc(2026, 11, d, 17) for d in (17, 24)] + [utc(2026, 12, d, 17) for d in (1, 8, 15, 22)]
    assert all(window_start <= s < window_end for s in starts(found))


def test_single_events_have_an_empty_recurrence_id_and_all_fields(listing) -> None:
    found = listing(
        ics("""
        BEGIN:VEVENT
        UID:single@test
        DTSTART;TZID=Europe/Madrid:20261201T100000
        DTEND;TZID=Europe/Madrid:20261201T105000
        SUMMARY:Session Z1Y2
        DESCRIPTION:Line one\\nJoin: https://teams.microsoft.com/l/meetup-join/abc
        LOCATION:https://zoom.us/j/123456789
        URL:https://example.org/booking/42
        X-GOOGLE-CONFERENCE:https://meet.google.com/abc-defg-hij
        STATUS:TENTATIVE
        ATTENDEE;CN=Client:mailto:client@example.org
        ATTENDEE;CN=Therapist:MAILTO:therapist@example.org
        END:VEVENT
        """)
    )
    (occ,) = found.values()
    assert occ.key == OccurrenceKey("single@test", "")
    assert occ.title == "Session Z1Y2"
    assert occ.description == "Line one\nJoin: https://teams.microsoft.com/l/meetup-join/abc"
    assert occ.location == "https://zoom.us/j/123456789"
    assert occ.url == "https://example.org/booking/42"
    assert occ.conference_url == "https://meet.google.com/abc-defg-hij"
    assert occ.status is Status.TENTATIVE
    assert occ.attendees == ("client@example.org", "therapist@example.org")
    assert occ.provider_id is None


def test_event_without_uid_gets_a_stable_derived_uid(listing, caplog) -> None:
    text = ics("""
        BEGIN:VEVENT
        DTSTART:20261201T100000Z
        DTEND:20261201T105000Z
        SUMMARY:Session without UID
        END:VEVENT
        """)
    caplog.set_level(logging.WARNING, logger="integrations.ics")
    first = listing(text)
    second = listing(text)
    assert list(first) == list(second)
    ((key, occ),) = first.items()
    assert key.ical_uid and key.recurrence_id == ""
    assert occ.start == utc(2026, 12, 1, 10)
    assert any("no UID" in r.getMessage() for r in caplog.records)
    assert not any("Session without UID" in r.getMessage() for r in caplog.records)


# --- real-world-shaped exports -----------------------------------------------------------------


def _summary(found: dict[OccurrenceKey, RemoteOccurrence]) -> list[tuple[str, str, datetime, datetime, str]]:
    return sorted((k.ical_uid[-6:], k.recurrence_id, o.start, o.end, o.status.value) for k, o in found.items())


def test_google_export() -> None:
    found = list_feed(DATA / "google_export.ics")
    weekly = sorted((k.recurrence_id, o.start) for k, o in found.items() if k.ical_uid.startswith("0a1b2c"))
    assert weekly == [
        ("2026-10-07T17:00:00+00:00", utc(2026, 10, 7, 17)),
        ("2026-10-14T17:00:00+00:00", utc(2026, 10, 14, 17)),
        # 21 Oct is an EXDATE; 28 Oct moved to Thursday morning
        ("2026-10-28T18:00:00+00:00", utc(2026, 10, 29, 7, 30)),
        ("2026-11-04T18:00:00+00:00", utc(2026, 11, 4, 18)),
        # 11 Nov is an EXDATE; UNTIL stops before 2 Dec
        ("2026-11-18T18:00:00+00:00", utc(2026, 11, 18, 18)),
        ("2026-11-25T18:00:00+00:00", utc(2026, 11, 25, 18)),
    ]
    first = found[OccurrenceKey("0a1b2c3d4e5f6g7h8i9j0k1l2m@google.com", "2026-10-07T17:00:00+00:00")]
    assert first.conference_url == "https://meet.google.com/dfq-wxyz-abc"
    assert first.attendees == ("therapist@alliance.example", "client-d4f7@alliance.example")
    london = sorted(o.start for k, o in found.items() if k.ical_uid.startswith("5z4y"))
    assert london == [utc(2026, 10, 13, 16), utc(2026, 10, 27, 17), utc(2026, 11, 10, 17)]
    assert {o.timezone for k, o in found.items() if k.ical_uid.startswith("5z4y")} == {"Europe/London"}
    single = found[OccurrenceKey("7g6f5e4d3c2b1a0z9y8x7w6v5u@google.com")]
    assert (single.start, single.timezone) == (utc(2026, 11, 24, 15), "Europe/Madrid")
    yearly = sorted(k.recurrence_id for k in found if k.ical_uid.startswith("9b8a"))
    assert yearly == ["2026-10-06", "2027-10-06"]
    assert len(found) == 12


def test_outlook_export() -> None:
    found = list_feed(DATA / "outlook_export.ics")
    series = {k.recurrence_id: o for k, o in found.items() if k.ical_uid.endswith("4B5C6D7E8F90")}
    assert sorted(o.start for o in series.values()) == [
        utc(2026, 10, 6, 16),
        utc(2026, 10, 13, 16),
        utc(2026, 10, 20, 16),
        utc(2026, 10, 27, 17),
        utc(2026, 11, 3, 17),
        # 10 Nov: EXDATE
        utc(2026, 11, 18, 18),  # the 17 Nov instance, moved to Wednesday 19:00
        utc(2026, 11, 24, 17),
        utc(2026, 12, 1, 17),
        utc(2026, 12, 8, 17),
        utc(2026, 12, 15, 17),  # UNTIL is inclusive
    ]
    assert series["2026-11-17T17:00:00+00:00"].start == utc(2026, 11, 18, 18)
    assert {o.timezone for o in series.values()} == {"Europe/Berlin"}
    assert "https://teams.microsoft.com/l/meetup-join/" in series["2026-10-06T16:00:00+00:00"].description
    london = sorted(o.start for k, o in found.items() if k.ical_uid.endswith("3579BDF02468ACE13579BDF"))
    assert london == [utc(2026, 10, 20, 8), utc(2026, 11, 3, 9), utc(2026, 11, 17, 9), utc(2026, 12, 1, 9)]
    training = next(o for o in found.values() if o.title == "Training day")
    assert (training.start, training.end, training.all_day) == (utc(2026, 11, 23), utc(2026, 11, 25), True)
    intake = next(o for o in found.values() if o.title.startswith("Cancelled:"))
    assert intake.status is Status.CANCELLED and intake.key.recurrence_id == ""
    assert len(found) == 16


def test_apple_export() -> None:
    found = list_feed(DATA / "apple_export.ics")
    uid = "5E1F0C4A-7B2D-4E8A-9C3B-1A2B3C4D5E6F"
    series = {k.recurrence_id: o for k, o in found.items() if k.ical_uid == uid}
    assert sorted(series) == [
        "2026-10-21T21:00:00+00:00",
        "2026-10-28T21:00:00+00:00",
        "2026-11-04T22:00:00+00:00",  # New York left DST on 1 Nov: 17:00 local is now 22:00Z
        "2026-11-11T22:00:00+00:00",
        "2026-11-18T22:00:00+00:00",
        "2026-11-25T22:00:00+00:00",
        "2026-11-28T15:00:00+00:00",  # RDATE
        "2026-12-02T22:00:00+00:00",
        "2026-12-09T22:00:00+00:00",
    ]
    moved = series["2026-11-25T22:00:00+00:00"]
    assert (moved.start, moved.end) == (utc(2026, 11, 26, 16), utc(2026, 11, 26, 17))
    assert series["2026-10-21T21:00:00+00:00"].url == "https://zoom.us/j/98765432101?pwd=YXBwbGVFeHBvcnQ"
    assert series["2026-10-21T21:00:00+00:00"].attendees == (
        "client-h8n5@alliance.example",
        "therapist@alliance.example",
    )
    floating = found[OccurrenceKey("F00DCAFE-1234-4321-ABCD-0123456789AB")]
    assert (floating.start, floating.end, floating.timezone) == (
        utc(2026, 11, 23, 13),
        utc(2026, 11, 23, 14, 30),
        "America/New_York",
    )
    holiday = found[OccurrenceKey("A1B2C3D4-E5F6-4711-8899-AABBCCDDEEFF")]
    assert (holiday.start, holiday.all_day) == (utc(2026, 11, 26), True)
    assert len(found) == 11


# --- property: a weekly slot keeps its wall time ------------------------------------------------

_ZONES = sorted(
    z
    for z in zoneinfo.available_timezones()
    if "/" in z and not z.startswith(("Etc/", "SystemV/", "posix", "right", "build"))
)


@given(
    zone_name=st.sampled_from(_ZONES),
    first_day=st.dates(min_value=date(2026, 8, 1), max_value=date(2027, 10, 31)),
    # Daylight-saving transitions happen between 22:00 and 04:00 local everywhere; a slot in a
    # transition gap has no wall time to keep, so slots are drawn from the daytime.
    hour=st.integers(min_value=5, max_value=21),
    minute=st.sampled_from([0, 10, 15, 30, 45, 50]),
    count=st.one_of(st.none(), st.integers(min_value=1, max_value=80)),
)
def test_weekly_series_keeps_its_local_wall_time(
    zone_name: str, first_day: date, hour: int, minute: int, count: int | None
) -> None:
    zone = zoneinfo.ZoneInfo(zone_name)
    local = datetime.combine(first_day, time(hour, minute))
    rule = "FREQ=WEEKLY" + (f";COUNT={count}" if count else "")
    text = ics(f"""
        BEGIN:VEVENT
        UID:prop@test
        DTSTART;TZID={zone_name}:{local:%Y%m%dT%H%M%S}
        DTEND;TZID={zone_name}:{local + timedelta(minutes=50):%Y%m%dT%H%M%S}
        RRULE:{rule}
        END:VEVENT
        """)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "feed.ics"
        path.write_text(text)
        found = list_feed(path)
    window_start, window_end = NOW - timedelta(days=60), NOW + timedelta(days=365)
    expected = 0
    for week in range(count or 200):
        start = (local + timedelta(weeks=week)).replace(tzinfo=zone)
        if start.astimezone(UTC) >= window_end:
            break
        if (start + timedelta(minutes=50)).astimezone(UTC) > window_start:
            expected += 1
    assert len(found) == expected
    for occ in found.values():
        wall = occ.start.astimezone(zone)
        assert (wall.hour, wall.minute, wall.weekday()) == (hour, minute, first_day.weekday())
        assert occ.timezone == zone_name
        assert occ.key.recurrence_id == occ.start.isoformat()
