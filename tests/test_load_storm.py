"""benchmarks/load_storm.py at a tiny size: real processes, emulator and PostgreSQL, behaviour only."""

from __future__ import annotations

import random

import pytest

from benchmarks.load_storm import Config, Conn, Edit, changed_pages, run, zipf_weights
from tests.conftest import _pg_admin_url

pytestmark = pytest.mark.postgres


@pytest.fixture
def admin_url(postgres_url: str) -> str:
    # postgres_url skips (or fails under CI=true) when no server answers; the harness wants the
    # admin URL to create and drop its own database.
    return _pg_admin_url()


@pytest.mark.parametrize("stack", ["split", "procrastinate"])
def test_tiny_storm_mirrors_every_edit_and_coalesces(admin_url: str, stack: str) -> None:
    # "procrastinate" is the scale-out deployment: `alliance serve --no-worker` + `alliance worker`.
    cfg = Config(
        connections=5, events=2, pings=50, edits=8, seconds=4, workers=1, admin_url=admin_url, seed=4, stack=stack
    )
    result = run(cfg, log=lambda _msg: None)

    assert result["connections"] == 5
    assert result["edits"] + result["edits_skipped"] == 8 and result["edits"] >= 1
    assert result["edits_mirrored"] == result["edits"]  # every edit reached the mirror
    assert result["pushes_failed"] == 0
    assert result["pushes_delivered"] == result["pings_sent"]  # every ping reached a web process
    assert 1 <= result["syncs"] <= result["pings_sent"]  # coalesced: never more syncs than pings
    assert result["changed_pages"] >= 1 and result["list_requests"] >= result["changed_pages"]
    assert result["pg_connections_max"] >= 1


def _edit(calendar: str, stamped: float) -> Edit:
    return Edit(Conn(1, calendar, {}), "e", None, 0.0, stamped)  # type: ignore[arg-type]


def _list(calendar: str, at: float) -> dict[str, object]:
    return {"method": "GET", "path": f"/calendar/v3/calendars/{calendar}/events", "at": at}


def test_changed_pages_counts_lists_that_could_see_a_new_edit() -> None:
    requests = [
        _list("a", 1.0),  # edit at 0.5: changed
        _list("a", 2.0),  # nothing new: wasted
        _list("a", 3.0),  # edits at 2.5 and 2.6: one changed page (3.2 is seen by nobody)
        _list("b", 1.0),  # no edit on b at all
        {"method": "POST", "path": "/calendar/v3/calendars/a/events/watch", "at": 3.5},  # not a list
        {"method": "GET", "path": "/calendar/v3/calendars/a/events/x1", "at": 3.5},  # a get, not a list
    ]
    edits = [_edit("a", 0.5), _edit("a", 2.5), _edit("a", 2.6), _edit("a", 3.2), _edit("b", 9.0)]
    assert changed_pages(requests, edits, latency=0.0) == (4, 2)
    # a request reads the calendar ``latency`` after it arrived: at 2.0 + 0.6 it sees 2.5 and 2.6,
    # at 3.0 + 0.6 the edit at 3.2
    assert changed_pages(requests, edits, latency=0.6) == (4, 3)


def test_zipf_weights_are_skewed_and_uniform_at_zero() -> None:
    weights = zipf_weights(100, 1.0)
    assert weights == sorted(weights, reverse=True) and weights[0] == 100 * weights[99]
    picks = random.Random(1).choices(range(100), weights=weights, k=10_000)
    assert picks.count(0) > 10 * picks.count(99)
    assert set(zipf_weights(10, 0.0)) == {1.0}
