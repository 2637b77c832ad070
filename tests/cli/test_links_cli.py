"""``alliance links`` / ``measures`` and ``sessions --json``'s client_url, as a user runs them."""

from __future__ import annotations

import json
import re
from pathlib import Path

from tests.cli.helpers import Run, _event, _ics, _soon
from tests.links.test_ratings import MEASURE

BASE = "https://alliance.example.org"


def _sessions(run: Run) -> list[dict[str, object]]:
    rows: list[dict[str, object]] = json.loads(run("sessions", "--json", env={"ALLIANCE_BASE_URL": BASE}).stdout)
    return rows


def test_links_are_issued_by_the_worker_shown_again_revoked_and_reissued(run: Run, tmp_path: Path) -> None:
    feed = tmp_path / "cal.ics"
    feed.write_text(_ics(_event("one@test", _soon(2), extra="LOCATION:https://meet.google.com/abc-defg-hij\r\n")))
    run("connect", "ics", str(feed))
    code = run("clients", "add", "--name", "Wilhelmina Zwanenburg").stdout.strip()
    run("assign", "one@test", "--client", code)
    [before] = _sessions(run)
    assert before["client_url"] is None  # the session.assigned job has not run yet
    run("jobs", "run")
    [session] = _sessions(run)
    url = str(session["client_url"])
    assert re.fullmatch(rf"{BASE}/c/[A-Za-z0-9_-]{{32}}", url), url
    assert code not in url and "Wilhelmina" not in url
    assert _sessions(run)[0]["client_url"] == url  # shown again, unchanged

    revoked = run("links", "revoke", str(session["id"]))
    assert "revoked" in revoked.stdout
    assert _sessions(run)[0]["client_url"] is None
    issued = run("links", "issue", str(session["id"]), env={"ALLIANCE_BASE_URL": BASE}).stdout.strip()
    assert issued.startswith(f"{BASE}/c/") and issued != url

    missing = run("links", "revoke", "999", check=False)
    assert missing.returncode == 1 and "no session with id 999" in missing.stderr

    contact = run("links", "contact", "Questions? Call 030 1234 567")
    assert "030 1234 567" in contact.stdout
    shown = json.loads(run("links", "show", str(session["id"]), "--json").stdout)
    assert shown["checkin"] is None and shown["join_clicks"] == []


def test_measures_load_needs_the_attestation(run: Run, tmp_path: Path) -> None:
    path = tmp_path / "srs.toml"
    path.write_text(MEASURE)
    refused = run("measures", "load", str(path), check=False)
    assert refused.returncode == 1 and "--attest-license" in refused.stderr
    assert "built-in wording" in run("measures", "show").stdout
    assert "loaded Session Rating Scale (SRS)" in run("measures", "load", str(path), "--attest-license").stdout
    assert "Session Rating Scale (SRS) (en)" in run("measures", "show").stdout
    assert "removed" in run("measures", "remove").stdout
