"""Series masters come in Graph ``$batch`` calls; one that fails inside a batch is asked for again alone."""

from __future__ import annotations

from core.mirror import add_connection, ensure_therapist, list_occurrences
from core.store import Store
from core.sync import sync_connection
from tests.integrations.outlook.world import OutlookWorld, at, weekly


def _connect(store: Store) -> int:
    return add_connection(store, ensure_therapist(store, "ana@example.org"), "outlook", "outlook", {})


def _master_gets(outlook: OutlookWorld) -> list[tuple[str, int]]:
    return [(r.path.rsplit("/", 1)[-1], r.status) for r in outlook.state.requests("/v1.0/me/events/", method="GET")]


def test_the_masters_a_page_names_come_in_one_call(outlook: OutlookWorld, sqlite_store: Store) -> None:
    masters = [outlook.seed({"subject": f"Weekly {n}", **weekly(at(2 + n, 9), 2)}) for n in range(5)]

    report = sync_connection(sqlite_store, _connect(sqlite_store), outlook.provider())

    assert report.created == 10
    assert len(outlook.state.requests("/v1.0/$batch", method="POST")) == 1
    assert sorted(_master_gets(outlook)) == sorted((m["id"], 200) for m in masters)  # each once, in the batch
    titles = {o.title for o in list_occurrences(sqlite_store)}
    assert titles == {f"Weekly {n}" for n in range(5)}  # completed from their masters


def test_a_master_that_failed_inside_the_batch_is_fetched_again_on_its_own(
    outlook: OutlookWorld, sqlite_store: Store
) -> None:
    masters = [outlook.seed({"subject": f"Weekly {n}", **weekly(at(2 + n, 9), 2)}) for n in range(3)]
    outlook.state.inject("events", 503, times=1)  # the batch's first request; the chained rest answer 424

    report = sync_connection(sqlite_store, _connect(sqlite_store), outlook.provider())

    assert report.created == 6
    assert len(outlook.state.requests("/v1.0/$batch", method="POST")) == 1
    assert {o.title for o in list_occurrences(sqlite_store)} == {"Weekly 0", "Weekly 1", "Weekly 2"}
    gets = _master_gets(outlook)
    assert [status for _, status in gets].count(503) == 1
    assert sorted(m for m, status in gets if status == 200) == sorted(m["id"] for m in masters)


def test_a_gone_master_is_none_and_the_ones_after_it_are_still_found(outlook: OutlookWorld) -> None:
    first = outlook.seed({"subject": "Weekly A", **weekly(at(2, 9), 2)})
    last = outlook.seed({"subject": "Weekly B", **weekly(at(3, 9), 2)})
    provider = outlook.provider()

    found = provider._masters_of([first["id"], "AAkALgAAgone", last["id"]])

    assert found["AAkALgAAgone"] is None  # the series is gone: its instances are skipped, as before
    assert found[first["id"]] is not None and found[first["id"]]["subject"] == "Weekly A"
    assert found[last["id"]] is not None and found[last["id"]]["subject"] == "Weekly B"  # 424 in the batch, then alone
    assert [status for _, status in _master_gets(outlook)] == [200, 404, 200]
