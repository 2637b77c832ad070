"""``alliance notes / audit / clients erase|export`` as a user runs them: a real process, both databases."""

from __future__ import annotations

import json
import sqlite3
import stat
from pathlib import Path

import pytest

from tests.cli.helpers import Run, _event, _ics, _soon

SECRET = "Talked about the Westbrook bridge panic attack"
PROCESS = "Countertransference: felt protective"


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_env(request: pytest.FixtureRequest) -> dict[str, str]:
    if request.param == "sqlite":
        return {}
    return {"ALLIANCE_DATABASE_URL": request.getfixturevalue("clean_postgres_url")}


def _setup(run: Run, tmp_path: Path, env: dict[str, str]) -> tuple[str, int]:
    feed = tmp_path / "cal.ics"
    feed.write_text(_ics(_event("weekly@test", _soon(2, 17), extra="RRULE:FREQ=WEEKLY;COUNT=2\r\n")))
    run("connect", "ics", str(feed), env=env)
    code = run("clients", "add", "--name", "Client Person", env=env).stdout.strip()
    run("assign", "weekly@test", "--client", code, env=env)
    sessions = json.loads(run("sessions", "--json", env=env).stdout)
    return code, int(sessions[0]["id"])


def test_notes_audit_export_and_erase_end_to_end(run: Run, tmp_path: Path, home: Path, db_env: dict[str, str]) -> None:
    code, sid = _setup(run, tmp_path, db_env)
    added = run("notes", "add", str(sid), "--text", SECRET, env=db_env)
    assert f"written for session {sid}, version 1" in added.stdout and SECRET not in added.stderr
    md = tmp_path / "process.md"
    md.write_text(PROCESS)
    assert "(process)" in run("notes", "add", str(sid), "--kind", "process", "--file", str(md), env=db_env).stdout

    shown = json.loads(run("notes", "show", str(sid), "--json", env=db_env).stdout)
    assert shown["client"] == code and not shown["event_removed"]
    assert [(n["kind"], n["text"]) for n in shown["notes"]] == [("progress", SECRET), ("process", PROCESS)]
    assert SECRET in run("notes", "show", str(sid), "--history", env=db_env).stdout

    # Bad input: one clear line, exit 1, nothing written.
    both = run("notes", "add", str(sid), "--text", "x", "--file", str(md), env=db_env, check=False)
    assert both.returncode == 1 and "exactly one of --text or --file" in both.stderr
    big = tmp_path / "big.md"
    big.write_text("x" * (64 * 1024 + 1))
    too_large = run("notes", "add", str(sid), "--file", str(big), env=db_env, check=False)
    assert too_large.returncode == 1 and "at most 65536 bytes" in too_large.stderr
    unknown = run("notes", "add", "999999", "--text", "x", env=db_env, check=False)
    assert unknown.returncode == 1 and "no session with id 999999" in unknown.stderr

    assert "audit log intact" in run("audit", "verify", env=db_env).stdout

    # Export: progress notes only, files private; process notes only with a reason.
    out = tmp_path / "export.json"
    run("clients", "export", code, "--out", str(out), env=db_env)
    bundle = json.loads(out.read_text())
    assert [n["kind"] for n in bundle["sessions"][0]["notes"]] == ["progress"]
    assert PROCESS not in out.read_text() and SECRET in out.with_suffix(".html").read_text()
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    no_reason = run("clients", "export", code, "--out", str(out), "--include-process-notes", env=db_env, check=False)
    assert no_reason.returncode == 1 and "reason" in no_reason.stderr
    run("clients", "export", code, "--out", str(out), "--include-process-notes", "--reason", "court order", env=db_env)
    assert PROCESS in out.read_text()

    # Erasure: an unknown code changes nothing; the real one shreds at once.
    missing = run("clients", "erase", "ZZZZ", "--yes", env=db_env, check=False)
    assert missing.returncode == 1 and "unknown client" in missing.stderr
    assert SECRET in run("notes", "show", str(sid), env=db_env).stdout
    assert "erased client" in run("clients", "erase", code, "--yes", env=db_env).stdout
    gone = run("notes", "show", str(sid), env=db_env, check=False)
    assert gone.returncode == 1 and "erased" in gone.stderr and SECRET not in gone.stdout
    assert "audit log intact" in run("audit", "verify", env=db_env).stdout


def test_audit_verify_names_an_altered_entry(run: Run, tmp_path: Path, home: Path) -> None:
    _, sid = _setup(run, tmp_path, {})
    for i in range(3):
        run("notes", "add", str(sid), "--text", f"note {i}")
    with sqlite3.connect(home / "alliance.db") as db:
        db.execute("UPDATE audit_log SET origin = 'somewhere else' WHERE seq = 2")
    damaged = run("audit", "verify", check=False)
    assert damaged.returncode == 1
    assert "entry 2: was altered" in damaged.stdout
    with sqlite3.connect(home / "alliance.db") as db:
        db.execute("DELETE FROM audit_log WHERE seq = 2")
    assert "entry 3: entries 2 to 2 are missing" in run("audit", "verify", check=False).stdout


def test_notes_import_writes_all_lines_or_none(run: Run, tmp_path: Path, home: Path, db_env: dict[str, str]) -> None:
    _code, sid = _setup(run, tmp_path, db_env)
    sessions = [int(s["id"]) for s in json.loads(run("sessions", "--json", env=db_env).stdout)]
    lines = [{"session": sessions[i % 2], "text": f"imported {i}"} for i in range(5)]
    lines.append({"session": sid, "text": PROCESS, "kind": "process"})
    good = tmp_path / "notes.jsonl"
    good.write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"session": sid, "text": "fine"}) + "\n" + json.dumps({"session": 999999, "text": "x"}))

    refused = run("notes", "import", str(bad), env=db_env, check=False)
    assert refused.returncode == 1 and "note 2: no session with id 999999; nothing was imported" in refused.stderr
    assert json.loads(run("notes", "show", str(sid), "--json", env=db_env).stdout)["notes"] == []
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"session": 1, "text": "x"}\n{"session": 1,\n')
    not_json = run("notes", "import", str(broken), env=db_env, check=False)
    assert not_json.returncode == 1 and "line 2: not a JSON object" in not_json.stderr

    assert "imported 6 note(s) for 2 session(s)" in run("notes", "import", str(good), env=db_env).stdout
    shown = json.loads(run("notes", "show", str(sid), "--json", env=db_env).stdout)
    assert [(n["kind"], n["text"]) for n in shown["notes"]] == [
        ("progress", "imported 0"),
        ("progress", "imported 2"),
        ("progress", "imported 4"),
        ("process", PROCESS),
    ]
    assert "audit log intact" in run("audit", "verify", env=db_env).stdout
