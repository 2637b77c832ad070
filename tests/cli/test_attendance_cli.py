"""``alliance cancellation`` (who cancelled, for R8) and ``alliance clients language`` as a user runs them."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

from tests.cli.helpers import Run, _event, _ics


def test_the_therapist_records_who_cancelled_and_a_clients_language(run: Run, tmp_path: Path) -> None:
    base = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) + timedelta(days=3)
    feed = tmp_path / "cal.ics"
    events = (
        _event("kept@test", base)
        + _event("gone@test", base + timedelta(days=7), extra="STATUS:CANCELLED\r\n")
        + _event("gone2@test", base + timedelta(days=14), extra="STATUS:CANCELLED\r\n")
    )
    feed.write_text(_ics(events))
    run("connect", "ics", str(feed))
    code = run("clients", "add", "--name", "Wilhelmina Zwanenburg", "--language", "es").stdout.strip()
    for uid in ("kept@test", "gone@test", "gone2@test"):
        run("assign", uid, "--client", code)
    sessions = {s["uid"]: s for s in json.loads(run("sessions", "--json").stdout)}
    kept, gone, gone2 = (sessions[u]["id"] for u in ("kept@test", "gone@test", "gone2@test"))

    listed = json.loads(run("clients", "list", "--json", "--show-names").stdout)
    assert [c["language"] for c in listed] == ["es"]
    assert run("clients", "language", code, "en").returncode == 0
    assert json.loads(run("clients", "list", "--json", "--show-names").stdout)[0]["language"] == "en"
    bad = run("clients", "language", code, "fr", check=False)
    assert bad.returncode == 1 and "language must be 'en' or 'es'" in bad.stderr

    shown = json.loads(run("cancellation", str(gone), "--by", "client", "--late", "--json").stdout)
    assert shown == {"session_id": gone, "cancelled_by": "client", "late": True}
    assert "cancelled by the client" in run("cancellation", str(gone2), "--by", "client").stdout
    listed = {s["id"]: (s["cancelled_by"], s["cancelled_late"]) for s in json.loads(run("sessions", "--json").stdout)}
    assert listed == {kept: (None, None), gone: ("client", True), gone2: ("client", False)}
    table = run("sessions").stdout
    assert "client (late)" in table and "cancelled by" in table
    data = json.loads(run("clients", "ratings", code, "--json").stdout)
    attendance = {s["session_id"]: s["attendance"] for s in data["sessions"]}
    assert attendance[gone] == "client_cancelled_late" and attendance[gone2] == "client_cancelled"
    assert [(f["rule"], f["rows"]) for f in data["flags"]] == [("R8", [gone, gone2])]

    refused = run("cancellation", str(kept), "--by", "client", check=False)
    assert refused.returncode == 1 and "is not cancelled" in refused.stderr
    unknown = run("cancellation", "99999", "--by", "client", check=False)
    assert unknown.returncode == 1 and "no session with id 99999" in unknown.stderr
    nobody = run("cancellation", str(gone), "--by", "the dog", check=False)
    assert nobody.returncode == 1 and "'client' or 'therapist'" in nobody.stderr
