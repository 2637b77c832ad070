"""``alliance checklists`` as a user runs it: a real process, a real database, answers typed or from a file."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.cli.helpers import Run, _event, _ics, _soon


def _session_ids(run: Run, tmp_path: Path) -> list[int]:
    feed = tmp_path / "cal.ics"
    feed.write_text(_ics(_event("weekly@test", _soon(1, 17), extra="RRULE:FREQ=WEEKLY;COUNT=2\r\n")))
    run("connect", "ics", str(feed))
    code = run("clients", "add", "--modality", "online").stdout.strip()
    run("assign", "weekly@test", "--client", code, "--from", "2000-01-01")
    return [int(s["id"]) for s in json.loads(run("sessions", "--json").stdout)]


def test_answers_from_a_file_and_show(run: Run, tmp_path: Path) -> None:
    first, _second = _session_ids(run, tmp_path)
    shown = json.loads(run("checklists", "show", str(first), "--json").stdout)
    assert shown["online"] and shown["first_session"]
    assert [f["key"] for f in shown["flags"]] == ["S2"]

    answers = tmp_path / "answers.json"
    answers.write_text(
        json.dumps(
            {
                "S1": "done",
                "S2": {"status": "done", "text": "Studio flat, Leith; callback +44 7700 900456"},
                "S6": {"status": "skipped", "reason": "asked next time"},
            }
        )
    )
    recorded = run("checklists", "run", str(first), "--list", "start", "--answers", str(answers))
    assert "3 answer(s) recorded" in recorded.stdout
    shown = json.loads(run("checklists", "show", str(first), "--json").stdout)
    assert shown["flags"] == []
    start = next(r for r in shown["lists"] if r["phase"] == "start")
    by_key = {i["key"]: i for i in start["items"]}
    assert by_key["S2"]["text_answer"] == "Studio flat, Leith; callback +44 7700 900456"
    assert (by_key["S6"]["status"], by_key["S6"]["reason"]) == ("skipped", "asked next time")
    assert by_key["S3"]["status"] is None
    table = run("checklists", "show", str(first)).stdout
    assert "skipped: asked next time" in table and "S2" in table
    assert json.loads(run("checklists", "flags", "--json").stdout) == [
        {"session": _second, "phase": "start", "key": "S2", "skipped": False}
    ]


def test_bad_input_is_one_clear_line_and_nothing_is_recorded(run: Run, tmp_path: Path) -> None:
    first, _second = _session_ids(run, tmp_path)
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"S1": "done", "S2": "done"}))
    failed = run("checklists", "run", str(first), "--list", "start", "--answers", str(bad), check=False)
    assert failed.returncode == 1 and "S2 needs a text" in failed.stderr
    assert json.loads(run("checklists", "show", str(first), "--json").stdout)["lists"][1]["started_at"] is None
    assert "--list is one of" in run("checklists", "run", str(first), "--list", "later", check=False).stderr
    assert "no session with id 999" in run("checklists", "show", "999", check=False).stderr
    bad.write_text("{not json")
    assert (
        "not valid JSON"
        in run("checklists", "run", str(first), "--list", "pre", "--answers", str(bad), check=False).stderr
    )


def test_interactive_run_asks_item_by_item(run: Run, home: Path, tmp_path: Path) -> None:
    _first, second = _session_ids(run, tmp_path)
    env = {k: v for k, v in os.environ.items() if not k.startswith("ALLIANCE_")}
    env.update({"ALLIANCE_HOME": str(home), "ALLIANCE_TIMEZONE": "Europe/Madrid", "COLUMNS": "200"})
    # Second session, start list: S1..S6 (no S7). S1 done; S2 done with details; S3 skipped; the rest left open.
    typed = "d\nd\nLibrary room 4; callback +34 600 000 001\ns\nclient on a bus, rescheduled\n\n\n\n"
    result = subprocess.run(
        [sys.executable, "-m", "alliance", "checklists", "run", str(second), "--list", "start"],
        input=typed,
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "3 answer(s) recorded, 3 of 6 answered" in result.stdout
    start = json.loads(run("checklists", "show", str(second), "--json").stdout)["lists"][1]
    answered = {i["key"]: (i["status"], i["text_answer"], i["reason"]) for i in start["items"] if i["status"]}
    assert answered == {
        "S1": ("done", None, None),
        "S2": ("done", "Library room 4; callback +34 600 000 001", None),
        "S3": ("skipped", None, "client on a bus, rescheduled"),
    }


def test_export_edit_and_import_a_list_as_a_new_version(run: Run, tmp_path: Path) -> None:
    first, second = _session_ids(run, tmp_path)
    run("checklists", "run", str(first), "--list", "pre", "--answers", str(_write(tmp_path, {"T2": "done"})))
    exported = json.loads(run("checklists", "templates", "--json").stdout)
    pre = next(t for t in exported if t["phase"] == "pre")
    pre["items"] = [i for i in pre["items"] if i["key"] != "T11"] + [{"key": "T12", "text": "Tissues and water."}]
    edited = tmp_path / "pre.json"
    edited.write_text(json.dumps(pre))
    saved = run("checklists", "edit", "--list", "pre", "--file", str(edited))
    assert "pre list: version 2 saved, 11 item(s)" in saved.stdout
    versions = [
        (t["phase"], t["version"], t["current"])
        for t in json.loads(run("checklists", "templates", "--all", "--json").stdout)
    ]
    assert ("pre", 1, False) in versions and ("pre", 2, True) in versions
    lists = {s: json.loads(run("checklists", "show", str(s), "--json").stdout)["lists"][0] for s in (first, second)}
    assert lists[first]["template_version"] == 1  # started before the edit
    assert lists[second]["template_version"] == 2 and lists[second]["items"][-1]["key"] == "T12"

    start = next(t for t in exported if t["phase"] == "start")
    start["items"] = [i for i in start["items"] if i["key"] != "S2"]
    edited.write_text(json.dumps(start))
    refused = run("checklists", "edit", "--list", "start", "--file", str(edited), check=False)
    assert refused.returncode == 1 and "keeps item S2" in refused.stderr
    edited.write_text(json.dumps([{"key": "A1"}]))
    assert (
        "needs a 'key' and a 'text'"
        in run("checklists", "edit", "--list", "post", "--file", str(edited), check=False).stderr
    )


def _write(tmp_path: Path, answers: dict[str, object]) -> Path:
    path = tmp_path / "answers-pre.json"
    path.write_text(json.dumps(answers))
    return path
