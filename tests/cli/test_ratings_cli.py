"""``alliance clients ratings CODE [--json]`` as a user runs it: sessions from an ICS file, real ratings."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

from alliance.keys import open_store
from alliance.settings import Settings
from core.clients import get_client, list_sessions
from core.mirror import ensure_therapist
from core.ratings import submit_rating
from tests.cli.helpers import Run, _event, _ics


def _rate(home: Path, code: str, index: int, bond: str, goals: str, approach: str, overall: str) -> None:
    """The client rates their ``index``-th session (what the client's page does, through core.ratings)."""
    settings = Settings(home=home)
    store = open_store(settings)
    try:
        therapist = ensure_therapist(store, settings.default_therapist_email)
        client = get_client(store, therapist, code)
        session = list_sessions(store, therapist, client_code=code)[index]
        scores: dict[str, str | None] = {"bond": bond, "goals": goals, "approach": approach, "overall": overall}
        submit_rating(store, session.id, client.id, scores)
    finally:
        store.close()


def test_ratings_of_a_client_as_a_table_and_as_json(run: Run, home: Path, tmp_path: Path) -> None:
    base = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    starts = [base - timedelta(days=days) for days in (22, 15, 8)]
    feed = tmp_path / "cal.ics"
    feed.write_text(_ics("".join(_event(f"s{i}@test", start) for i, start in enumerate(starts))))
    run("connect", "ics", str(feed))
    code = run("clients", "add", "--name", "Wilhelmina Zwanenburg").stdout.strip()
    for i in range(3):
        run("assign", f"s{i}@test", "--client", code)
    _rate(home, code, 0, "9.5", "9.5", "9.5", "9.5")  # 38.0
    _rate(home, code, 1, "9", "9", "9", "8")  # 35.0: below the cutoff, early, 3.0 down

    data = json.loads(run("clients", "ratings", code, "--json").stdout)
    assert data["client"] == code and data["cutoff"] == 36.0
    assert [s["total"] for s in data["sessions"]] == [38.0, 35.0, None]
    assert [s["rating"] for s in data["sessions"]] == ["completed", "completed", "missing"]
    ids = [s["session_id"] for s in data["sessions"]]
    assert [(f["session_id"], f["rule"]) for f in data["flags"]] == [(ids[1], "R1"), (ids[1], "R3"), (ids[1], "R4")]

    shown = run("clients", "ratings", code.lower()).stdout
    assert "38.0" in shown and "35.0" in shown and "missing" in shown
    assert "R3 (review) at session 2: The rating dropped" in shown and "[sessions 1, 2]" in shown
    assert "Wilhelmina" not in shown

    tuned = json.loads(run("clients", "ratings", code, "--json", env={"ALLIANCE_ALERT_CUTOFF": "34"}).stdout)
    assert [f["rule"] for f in tuned["flags"]] == ["R2", "R3"]  # 35.0 is above 34; its 8.0 item is low

    unknown = run("clients", "ratings", "NOPE", check=False)
    assert unknown.returncode == 1 and "no client with code 'NOPE'" in unknown.stderr
