"""Master keys from the command line: key file creation, rotation, retirement, wrong keys."""

from __future__ import annotations

import json
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

from core.crypto import generate_key_text
from tests.cli.helpers import Run, _event, _ics


def _connect_feed(run: Run, tmp_path: Path, env: dict[str, str] | None = None) -> list[dict[str, object]]:
    start = (datetime.now(UTC) + timedelta(days=1)).replace(hour=9, minute=0, second=0, microsecond=0)
    feed = tmp_path / "cal.ics"
    feed.write_text(_ics(_event("k@test", start, summary="Session K7Q2")))
    run("connect", "ics", str(feed), env=env)
    return json.loads(run("events", "--json", env=env).stdout)  # type: ignore[no-any-return]


def test_development_creates_a_private_key_file_and_rotation_keeps_data(run: Run, home: Path, tmp_path: Path) -> None:
    before = _connect_feed(run, tmp_path)
    key_file = home / "master.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600

    rotated = run("keys", "rotate")
    assert "re-wrapped 1 data key(s) under master key version 2" in rotated.stdout
    status = run("keys", "status").stdout
    assert "active version 2" in status and "version 1: wraps 0" in status
    assert json.loads(run("events", "--json").stdout) == before

    assert "retired master key version 1" in run("keys", "retire", "1").stdout
    assert set(json.loads(key_file.read_text())["keys"]) == {"2"}
    assert json.loads(run("events", "--json").stdout) == before
    refused = run("keys", "retire", "2", check=False)
    assert refused.returncode == 1 and "active" in refused.stderr


def test_a_wrong_master_key_refuses_to_start(run: Run, tmp_path: Path) -> None:
    key = generate_key_text()
    _connect_feed(run, tmp_path, env={"ALLIANCE_MASTER_KEY": key})
    wrong = run("events", "--json", env={"ALLIANCE_MASTER_KEY": generate_key_text()}, check=False)
    assert wrong.returncode == 1
    assert wrong.stderr.strip() == "error: the master key does not match the data (version 1 from ALLIANCE_MASTER_KEY)"
    garbage = run("events", env={"ALLIANCE_MASTER_KEY": "not-a-key"}, check=False)
    assert garbage.returncode == 1 and "base64" in garbage.stderr


def test_rotation_with_keys_from_the_environment(run: Run, tmp_path: Path) -> None:
    old, new = generate_key_text(), generate_key_text()
    before = _connect_feed(run, tmp_path, env={"ALLIANCE_MASTER_KEY": old})
    both = {"ALLIANCE_MASTER_KEY": f"2:{new},1:{old}"}
    assert "under master key version 2" in run("keys", "rotate", env=both).stdout
    assert "remove it from ALLIANCE_MASTER_KEY" in run("keys", "retire", "1", env=both).stdout
    assert json.loads(run("events", "--json", env={"ALLIANCE_MASTER_KEY": f"2:{new}"}).stdout) == before
    gone = run("events", env={"ALLIANCE_MASTER_KEY": old}, check=False)
    assert gone.returncode == 1 and "version 2 is missing" in gone.stderr


def test_generate_prints_a_usable_key(run: Run) -> None:
    key = run("keys", "generate").stdout.strip()
    assert len(key) == 44
    assert run("connections", env={"ALLIANCE_MASTER_KEY": key}).returncode == 0
