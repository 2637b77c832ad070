"""Pages and series masters are fetched ahead of the engine, and the fetching stops with the sync."""

from __future__ import annotations

import threading
import time

import pytest

from core.mirror import add_connection, ensure_therapist, list_occurrences
from core.store import Store
from core.sync import sync_connection
from integrations.outlook.feed import DEPTH
from tests.integrations.outlook.world import DELTA_PATH, OutlookWorld, at, timed, weekly


def _connect(store: Store) -> int:
    return add_connection(store, ensure_therapist(store, "ana@example.org"), "outlook", "outlook", {})


def _wait_for(condition: object, seconds: float = 5.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return True
        time.sleep(0.01)
    return False


def test_later_pages_and_their_masters_are_fetched_while_the_first_page_is_stored(
    outlook: OutlookWorld, sqlite_store: Store
) -> None:
    for n in range(3):
        outlook.seed({"subject": f"Session {n}", **timed(at(n + 1))})
    master = outlook.seed({"subject": "Weekly", **weekly(at(9, 17), 2)})  # listed last: on the third page
    conn = _connect(sqlite_store)
    master_path = f"/v1.0/me/events/{master['id']}"
    while_storing: dict[str, int] = {}

    def hold_the_first_page(point: str) -> None:
        if point == "before_commit" and not while_storing:
            # The engine is storing page 1: Graph should meanwhile be asked for everything after it.
            _wait_for(lambda: len(outlook.state.requests(DELTA_PATH)) == 3 and outlook.state.requests(master_path))
            while_storing["pages"] = len(outlook.state.requests(DELTA_PATH))
            while_storing["masters"] = len(outlook.state.requests(master_path))

    report = sync_connection(
        sqlite_store, conn, outlook.provider(outlook.settings() | {"page_size": 2}), checkpoint=hold_the_first_page
    )

    assert while_storing == {"pages": 3, "masters": 1}
    assert report.created == 5 and report.pages == 3
    assert {o.title for o in list_occurrences(sqlite_store) if o.uid == master["iCalUId"]} == {"Weekly"}
    assert len(outlook.state.requests(master_path)) == 1  # once per round, however early


def test_a_sync_that_stops_early_stops_fetching_pages(outlook: OutlookWorld, sqlite_store: Store) -> None:
    for n in range(12):
        outlook.seed({"subject": f"Session {n}", **timed(at(n + 1))})
    conn = _connect(sqlite_store)

    def fail_after_the_first_page(point: str) -> None:
        if point == "after_commit":
            # Let the fetching run as far ahead as it may before the engine gives up.
            _wait_for(lambda: len(outlook.state.requests(DELTA_PATH)) >= DEPTH + 2, seconds=2)
            raise RuntimeError("the engine stopped")

    with pytest.raises(RuntimeError, match="the engine stopped"):
        sync_connection(
            sqlite_store,
            conn,
            outlook.provider(outlook.settings() | {"page_size": 1}),
            checkpoint=fail_after_the_first_page,
        )

    fetched = len(outlook.state.requests(DELTA_PATH))
    # The stored page, the one the engine took while the first was committing (its writer thread
    # commits a page while the next is taken), the pages waiting for it, and the one in flight.
    assert fetched <= 1 + 1 + DEPTH + 1
    time.sleep(0.3)
    assert len(outlook.state.requests(DELTA_PATH)) == fetched
    fetchers = [t for t in threading.enumerate() if t.name == "outlook-page" or t.name.startswith("outlook_")]
    assert not fetchers


def test_the_next_page_is_not_kept_waiting_behind_the_masters_a_page_names(
    outlook: OutlookWorld, sqlite_store: Store
) -> None:
    # Four one-occurrence series, two per page: page 1 names two masters. Every Graph request
    # takes 0.2 s, so what waits for a mailbox slot shows in the order the requests arrive.
    for n in range(4):
        outlook.seed({"subject": f"Weekly {n}", **weekly(at(n + 1, 9), 1)})
    outlook.state.settings.latency = 0.2
    conn = _connect(sqlite_store)

    report = sync_connection(sqlite_store, conn, outlook.provider(outlook.settings() | {"page_size": 2}))

    assert report.created == 4
    arrivals = [r.path for r in outlook.graph_requests()]
    pages = [n for n, path in enumerate(arrivals) if path == DELTA_PATH]
    masters = [n for n, path in enumerate(arrivals) if path.startswith("/v1.0/me/events/")]
    assert len(pages) == 2 and len(masters) == 4  # each master once
    # The second page was asked for while page 1's first master was in flight, not after both
    # of its masters had taken the mailbox's two slots.
    assert pages[1] < masters[1]
    assert {o.title for o in list_occurrences(sqlite_store)} == {f"Weekly {n}" for n in range(4)}
