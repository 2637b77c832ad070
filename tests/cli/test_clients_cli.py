"""``alliance clients / assign / sessions`` as a user runs them: a real process and database."""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from core.clients import ALPHABET
from tests.cli.helpers import Run, _ics, _soon
from tests.cli.helpers import _event as event

NAME = "Wilhelmina Zwanenburg"
EMAIL = "wilhelmina@example.org"
FMT = "%Y%m%dT%H%M%SZ"


def _event(uid: str, start: datetime, extra: str = "") -> str:
    return event(uid, start, summary="Appointment", extra=extra)


def _sessions(run: Run, *args: str) -> list[dict[str, object]]:
    rows: list[dict[str, object]] = json.loads(run("sessions", "--json", *args).stdout)
    return rows


def test_add_a_client_assign_a_series_and_list_sessions(run: Run, tmp_path: Path) -> None:
    feed = tmp_path / "cal.ics"
    weekly_start = _soon(2, hour=17)
    feed.write_text(
        _ics(
            _event(
                "weekly@test",
                weekly_start,
                "RRULE:FREQ=WEEKLY;COUNT=3\r\nLOCATION:https://meet.google.com/abc-defg-hij\r\n",
            )
            + _event("intake@test", _soon(1), f"ATTENDEE;CN=W:mailto:{EMAIL.upper()}\r\n")
        )
    )
    run("connect", "ics", str(feed))

    added = run("clients", "add", "--name", NAME, "--email", EMAIL, "--timezone", "Europe/Berlin")
    code = added.stdout.strip()
    assert re.fullmatch(f"[{ALPHABET}]{{4}}", code), added.stdout
    assert NAME not in added.stdout + added.stderr and EMAIL not in added.stdout + added.stderr
    # The intake event already had the client's e-mail among its attendees: a rule session.
    [intake] = _sessions(run)
    assert (intake["uid"], intake["client"], intake["source"], intake["modality"]) == (
        "intake@test",
        code,
        "rule",
        "in_person",
    )

    assigned = run("assign", "weekly@test", "--client", code.lower())
    assert f"assigned to {code}" in assigned.stdout and "3 session(s)" in assigned.stdout
    sessions = _sessions(run)
    weekly = [s for s in sessions if s["uid"] == "weekly@test"]
    assert [s["start"] for s in weekly] == [(weekly_start + timedelta(weeks=i)).isoformat() for i in range(3)]
    assert {(s["client"], s["source"], s["modality"], s["status"]) for s in weekly} == {
        (code, "series", "online", "confirmed")
    }
    assert [s["recurrence_id"] for s in weekly] == [s["start"] for s in weekly]
    assert intake["recurrence_id"] is None

    # Names and e-mails only on request, in every output form.
    plain = run("sessions").stdout + json.dumps(sessions) + run("clients", "list").stdout
    assert NAME not in plain and EMAIL not in plain
    named = _sessions(run, "--show-names")
    assert {(s["client_name"], s["client_email"]) for s in named} == {(NAME, EMAIL)}
    assert NAME in run("clients", "list", "--show-names", "--json").stdout

    # One occurrence, by its original start, to another client with an explicit modality.
    other = run("clients", "add", "--modality", "online").stdout.strip()
    second = weekly[1]
    one = json.loads(
        run(
            "assign",
            "weekly@test",
            "--client",
            other,
            "--occurrence",
            str(second["recurrence_id"]),
            "--modality",
            "in_person",
            "--json",
        ).stdout
    )["session"]
    assert (one["id"], one["client"], one["source"], one["modality"]) == (second["id"], other, "manual", "in_person")

    # A reschedule and a cancellation at the source: same sessions, new times, status visible.
    moved = weekly_start + timedelta(days=1)
    feed.write_text(
        _ics(
            _event(
                "weekly@test",
                weekly_start,
                "RRULE:FREQ=WEEKLY;COUNT=3\r\nLOCATION:https://meet.google.com/abc-defg-hij\r\n",
            )
            + _event("weekly@test", moved, f"RECURRENCE-ID:{weekly_start.strftime(FMT)}\r\n")
            + _event("intake@test", _soon(1), f"STATUS:CANCELLED\r\nATTENDEE:mailto:{EMAIL}\r\n")
        )
    )
    report = json.loads(run("sync", "--json").stdout)[0]
    assert (report["rescheduled"], report["cancelled"]) == (1, 1)
    after = {s["id"]: s for s in _sessions(run)}
    assert set(after) == {s["id"] for s in sessions}
    assert after[weekly[0]["id"]]["start"] == moved.isoformat()
    assert after[weekly[0]["id"]]["recurrence_id"] == weekly_start.isoformat()
    assert after[intake["id"]]["status"] == "cancelled"

    window = _sessions(run, "--from", (weekly_start + timedelta(days=6)).isoformat(), "--to", _soon(30).isoformat())
    assert [s["id"] for s in window] == [weekly[1]["id"], weekly[2]["id"]]
    mine = _sessions(run, "--client", other)
    assert [s["id"] for s in mine] == [weekly[1]["id"]]


def test_assign_errors_are_one_clear_line(run: Run, tmp_path: Path) -> None:
    feed = tmp_path / "cal.ics"
    feed.write_text(_ics(_event("weekly@test", _soon(2), "RRULE:FREQ=WEEKLY;COUNT=2\r\n")))
    run("connect", "ics", str(feed))
    run("connect", "ics", str(feed), "--name", "again")  # the same calendar twice: UIDs are ambiguous
    code = run("clients", "add").stdout.strip()

    def error(*args: str) -> str:
        result = run(*args, check=False)
        assert result.returncode == 1, result
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("error:"), result.stderr
        return lines[0]

    assert "unknown client code" in error("assign", "weekly@test", "--client", "ZZZZ")
    assert "no event with UID 'nope@test'" in error("assign", "nope@test", "--client", code)
    ambiguous = error("assign", "weekly@test", "--client", code)
    assert "again, cal" in ambiguous and "--connection" in ambiguous
    missing = error(
        "assign", "weekly@test", "--client", code, "--connection", "cal", "--occurrence", "2031-01-01T00:00"
    )
    assert "no occurrence at 2031-01-01T00:00:00+00:00" in missing
    assert "e-mail" in error("clients", "add", "--email", "not an address")
    assert "unknown client code" in error("sessions", "--client", "ZZZZ")
    assert run("assign", "weekly@test", "--client", code, "--connection", "again").returncode == 0
    assert {s["connection"] for s in _sessions(run)} == {"again"}


@pytest.mark.postgres
def test_clients_and_sessions_on_postgresql(run: Run, tmp_path: Path, clean_postgres_url: str) -> None:
    pg = {"ALLIANCE_DATABASE_URL": clean_postgres_url}
    feed = tmp_path / "cal.ics"
    feed.write_text(_ics(_event("pg@test", _soon(1), "RRULE:FREQ=DAILY;COUNT=2\r\n")))
    run("connect", "ics", str(feed), env=pg)
    code = run("clients", "add", "--name", NAME, env=pg).stdout.strip()
    run("assign", "pg@test", "--client", code, env=pg)
    sessions = json.loads(run("sessions", "--json", env=pg).stdout)
    assert [(s["client"], s["source"]) for s in sessions] == [(code, "series")] * 2
