"""The ``alliance`` command as a user runs it: a real process, real files, a real database."""

from __future__ import annotations

import json
import sqlite3
from datetime import timedelta
from pathlib import Path

import pytest

from tests.cli.helpers import Run, _event, _ics, _soon


def _row_counts(db: Path) -> dict[str, int]:
    with sqlite3.connect(db) as conn:
        return {
            t: conn.execute(f"select count(*) from {t}").fetchone()[0]
            for t in ("occurrences", "occurrence_history", "outbox")
        }


def test_connect_sync_and_list_events(run: Run, home: Path, tmp_path: Path) -> None:
    feed = tmp_path / "calendar.ics"
    start = _soon(2)
    feed.write_text(
        _ics(
            _event("one@test", start, summary="Session K7Q2", extra="LOCATION:https://us02web.zoom.us/j/123456789\r\n")
            + _event("two@test", _soon(3), summary="Supervision")
            + "BEGIN:VEVENT\r\nUID:allday@test\r\nDTSTAMP:20260101T000000Z\r\n"
            f"DTSTART;VALUE=DATE:{_soon(4):%Y%m%d}\r\nDTEND;VALUE=DATE:{_soon(6):%Y%m%d}\r\nSUMMARY:Away\r\nEND:VEVENT\r\n"
        )
    )
    connected = run("connect", "ics", str(feed))
    assert "connected 'calendar'" in connected.stdout
    assert "3 created" in connected.stdout

    events = json.loads(
        run("events", "--json", "--from", _soon(0, 0).isoformat(), "--to", _soon(10).isoformat()).stdout
    )
    by_uid = {e["uid"]: e for e in events}
    assert set(by_uid) == {"one@test", "two@test", "allday@test"}
    one = by_uid["one@test"]
    assert one["start"] == start.isoformat() and one["start"].endswith("+00:00")
    assert one["end"] == (start + timedelta(minutes=50)).isoformat()
    assert one["video_url"] == "https://us02web.zoom.us/j/123456789"
    assert one["recurrence_id"] is None and one["status"] == "confirmed" and one["connection"] == "calendar"
    allday = by_uid["allday@test"]
    assert allday["all_day"] is True
    assert (allday["start"], allday["end"]) == (f"{_soon(4):%Y-%m-%d}", f"{_soon(6):%Y-%m-%d}")

    connections = json.loads(run("connections", "--json").stdout)
    assert [(c["name"], c["health"], c["occurrences"]) for c in connections] == [("calendar", "ok", 3)]


def test_second_sync_with_no_change_reports_zero_and_writes_nothing(run: Run, home: Path, tmp_path: Path) -> None:
    feed = tmp_path / "cal.ics"
    feed.write_text(_ics(_event("a@test", _soon(1)) + _event("b@test", _soon(2))))
    run("connect", "ics", str(feed))
    # A regenerated export (new DTSTAMP, same content) is not a change either.
    feed.write_text(feed.read_text().replace("DTSTAMP:20260101T000000Z", "DTSTAMP:20261101T101010Z"))
    before = _row_counts(home / "alliance.db")
    report = json.loads(run("sync", "--json").stdout)
    assert report == [
        {
            "connection": "cal",
            "id": 1,
            "ok": True,
            "created": 0,
            "updated": 0,
            "rescheduled": 0,
            "restored": 0,
            "cancelled": 0,
            "unchanged": 2,
            "full_resync": False,
        }
    ]
    assert _row_counts(home / "alliance.db") == before


def test_moves_and_cancellations_show_up_and_cancelled_only_on_request(run: Run, tmp_path: Path) -> None:
    feed = tmp_path / "cal.ics"
    feed.write_text(_ics(_event("a@test", _soon(1)) + _event("b@test", _soon(2)) + _event("c@test", _soon(3))))
    run("connect", "ics", str(feed))
    moved_to = _soon(1, hour=17)
    feed.write_text(
        _ics(_event("a@test", moved_to) + _event("b@test", _soon(2), extra="STATUS:CANCELLED\r\n"))  # c deleted
    )
    report = json.loads(run("sync", "--json").stdout)[0]
    assert (report["rescheduled"], report["cancelled"], report["created"]) == (1, 2, 0)
    window = ["--from", _soon(0, 0).isoformat(), "--to", _soon(5).isoformat()]
    live = json.loads(run("events", "--json", *window).stdout)
    assert [(e["uid"], e["start"]) for e in live] == [("a@test", moved_to.isoformat())]
    everything = json.loads(run("events", "--json", "--include-cancelled", *window).stdout)
    assert {e["uid"]: e["status"] for e in everything} == {
        "a@test": "confirmed",
        "b@test": "cancelled",
        "c@test": "cancelled",
    }


def test_bad_sources_give_one_line_and_change_nothing(run: Run, home: Path, tmp_path: Path) -> None:
    missing = run("connect", "ics", str(tmp_path / "nope.ics"), check=False)
    assert missing.returncode != 0
    assert missing.stderr.strip().startswith("error:") and len(missing.stderr.strip().splitlines()) == 1

    garbage = tmp_path / "garbage.ics"
    garbage.write_text("this is not a calendar\n")
    bad = run("connect", "ics", str(garbage), check=False)
    assert bad.returncode != 0 and len(bad.stderr.strip().splitlines()) == 1
    assert "nothing was added" in bad.stderr
    assert json.loads(run("connections", "--json").stdout) == []

    feed = tmp_path / "cal.ics"
    feed.write_text(_ics(_event("a@test", _soon(1)) + _event("b@test", _soon(2))))
    run("connect", "ics", str(feed))
    window = ["--from", _soon(0, 0).isoformat(), "--to", _soon(5).isoformat()]
    before = run("events", "--json", *window).stdout
    feed.write_text("BEGIN:VCALENDAR\r\nBEGIN:VEVENT\r\nDTSTART:garbage\r\n")  # truncated, broken export
    broken = run("sync", check=False)
    assert broken.returncode == 1
    assert [line for line in broken.stderr.splitlines() if line.strip()][-1].startswith("error: cal:")
    assert run("events", "--json", *window).stdout == before
    health = json.loads(run("connections", "--json").stdout)[0]
    assert health["health"] == "error" and health["last_error"]


def test_a_feed_that_suddenly_lists_nothing_is_refused_unless_allowed(run: Run, tmp_path: Path) -> None:
    feed = tmp_path / "cal.ics"
    feed.write_text(_ics(_event("a@test", _soon(1)) + _event("b@test", _soon(2))))
    run("connect", "ics", str(feed))
    feed.write_text(_ics(""))
    refused = run("sync", check=False)
    assert refused.returncode == 1 and "--allow-empty" in refused.stderr
    window = ["--from", _soon(0, 0).isoformat(), "--to", _soon(5).isoformat()]
    assert len(json.loads(run("events", "--json", *window).stdout)) == 2
    allowed = json.loads(run("sync", "--json", "--allow-empty").stdout)[0]
    assert allowed["cancelled"] == 2
    assert json.loads(run("events", "--json", *window).stdout) == []


def test_bad_arguments_and_settings_are_explained(run: Run) -> None:
    bad_from = run("events", "--json", "--from", "next tuesday", check=False)
    assert bad_from.returncode != 0 and "--from must be an ISO 8601" in bad_from.stderr
    bad_zone = run("connections", env={"ALLIANCE_TIMEZONE": "Mars/Olympus"}, check=False)
    assert bad_zone.returncode == 2 and "ALLIANCE_TIMEZONE" in bad_zone.stderr
    bad_db = run("connections", env={"ALLIANCE_DATABASE_URL": "mysql://x"}, check=False)
    assert bad_db.returncode == 2 and "ALLIANCE_DATABASE_URL" in bad_db.stderr
    unknown = run("sync", "--connection", "nope", check=False)
    assert unknown.returncode == 1 and "no connection named 'nope'" in unknown.stderr


def test_demo_mirrors_the_sample_calendar_into_a_fresh_home(run: Run, tmp_path: Path) -> None:
    target = tmp_path / "demo-home"
    result = run("demo", "--home", str(target))
    assert "first sync:" in result.stdout
    assert "re-sync with no change at the source: 0 changes" in result.stdout
    events = json.loads(
        run(
            "events",
            "--json",
            "--include-cancelled",
            "--from",
            "2026-01-01",
            "--to",
            "2028-01-01",
            env={"ALLIANCE_HOME": str(target)},
        ).stdout
    )
    statuses = {e["status"] for e in events}
    assert "cancelled" in statuses and "confirmed" in statuses
    links = {e["video_url"].split("/")[2] for e in events if e["video_url"]}
    assert {"meet.google.com", "teams.microsoft.com"} <= links and any("zoom.us" in h for h in links)
    again = run("demo", "--home", str(target), check=False)
    assert again.returncode == 1 and "fresh ALLIANCE_HOME" in again.stderr


@pytest.mark.postgres
def test_the_same_commands_work_on_postgresql(run: Run, tmp_path: Path, clean_postgres_url: str) -> None:
    feed = tmp_path / "cal.ics"
    feed.write_text(_ics(_event("pg@test", _soon(1))))
    pg = {"ALLIANCE_DATABASE_URL": clean_postgres_url}
    run("connect", "ics", str(feed), env=pg)
    events = json.loads(run("events", "--json", env=pg).stdout)
    assert [e["uid"] for e in events] == ["pg@test"]
    feed.write_text(_ics(_event("pg@test", _soon(1, hour=15))))
    assert json.loads(run("sync", "--json", env=pg).stdout)[0]["rescheduled"] == 1
    assert json.loads(run("sync", "--json", env=pg).stdout)[0]["unchanged"] == 0  # unchanged feed: no work at all
