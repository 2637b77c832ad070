"""``alliance connections --json``: the sync-health fields (issue 9, item 6)."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

from tests.cli.helpers import Run, _event, _ics, _soon


def test_connections_json_shows_the_failure_streak_and_needs_attention(run: Run, tmp_path: Path) -> None:
    feed = tmp_path / "cal.ics"
    feed.write_text(_ics(_event("a@test", _soon(1))))
    run("connect", "ics", str(feed), "--name", "practice")
    (healthy,) = json.loads(run("connections", "--json").stdout)
    assert healthy["last_sync"]["ok"] is True and healthy["consecutive_failures"] == 0
    assert healthy["needs_attention"] is False and healthy["attention_reason"] is None
    assert healthy["backoff_until"] is None and healthy["push"] is None
    assert datetime.fromisoformat(healthy["next_reconcile_at"]) > datetime.fromisoformat(healthy["last_sync"]["at"])

    feed.unlink()  # the file is gone: retrying soon cannot help, so no backoff, but it counts
    env = {"ALLIANCE_SYNC_MAX_FAILURES": "2"}
    for _ in range(2):
        assert run("sync", env=env, check=False).returncode == 1
    (failing,) = json.loads(run("connections", "--json", env=env).stdout)
    assert failing["health"] == "needs_attention" and failing["consecutive_failures"] == 2
    assert failing["last_sync"]["ok"] is False and "no longer exists" in failing["last_sync"]["error"]
    assert failing["needs_attention"] is True and "2 failed syncs in a row" in failing["attention_reason"]
    assert failing["backoff_until"] is None and failing["failing_since"] is not None
