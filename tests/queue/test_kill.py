"""A worker killed mid-sync (SIGKILL): after the reaper nothing is lost, nothing doubled, the lock is free."""

from __future__ import annotations

import asyncio
import signal
from datetime import UTC, datetime

import pytest
from procrastinate import App

from alliance.queue.connect import make_connector
from alliance.queue.reaper import ReapCounts, reap_stalled
from alliance.queue.stats import procrastinate_counts
from alliance.reconcile import request_sync, sync_key
from core.jobs import JobRegistry
from core.mirror import list_occurrences
from core.store import Store
from tests.queue.conftest import Feed, Workers, scalar, wait_until

STALE_SECONDS = 2.0  # the killed worker's heartbeat (every 0.5 s here) counts as stale after this


def _reap(url: str) -> ReapCounts:
    async def run() -> ReapCounts:
        app = App(connector=make_connector(url, max_size=2))
        async with app.open_async():
            return await reap_stalled(app.job_manager, stale_seconds=STALE_SECONDS)

    return asyncio.run(run())


def _doing(store: Store, key: str) -> int:
    return int(scalar(store, "SELECT count(*) FROM procrastinate_jobs WHERE lock = :k AND status = 'doing'", k=key))


def _open(store: Store, key: str) -> int:
    return int(
        scalar(store, "SELECT count(*) FROM procrastinate_jobs WHERE lock = :k AND status IN ('todo', 'doing')", k=key)
    )


def _created_events(store: Store) -> int:
    return int(scalar(store, "SELECT count(*) FROM outbox WHERE kind = 'occurrence.created'"))


@pytest.mark.parametrize("sibling", [False, True], ids=["alone", "with-a-queued-sibling"])
def test_a_sync_whose_worker_was_killed_is_finished_by_the_reaper(
    pg_store: Store,
    pg_url: str,
    registry: JobRegistry,
    workers: Workers,
    feed: Feed,
    connection_id: int,
    sibling: bool,
) -> None:
    key = sync_key(connection_id)
    doomed = workers.start()
    feed.hold()
    request_sync(pg_store, registry, connection_id, datetime.now(UTC))
    wait_until(feed.started.is_set, "the sync reached the (slow) feed")
    worker_id = scalar(pg_store, "SELECT worker_id FROM procrastinate_jobs WHERE lock = :k AND status = 'doing'", k=key)
    doomed.send_signal(signal.SIGKILL)
    doomed.wait()
    if sibling:  # a ping after the crash: it waits behind the dead job's lock
        assert request_sync(pg_store, registry, connection_id, datetime.now(UTC)) is True
    workers.start()
    feed.release.set()
    assert _doing(pg_store, key) == 1  # the dead worker's job still holds the connection's lock

    wait_until(
        lambda: scalar(
            pg_store,
            "SELECT now() - last_heartbeat > make_interval(secs => :s) FROM procrastinate_workers WHERE id = :w",
            s=STALE_SECONDS,
            w=worker_id,
        ),
        "the killed worker's heartbeat went stale",
    )
    # What an operator sees meanwhile (alliance jobs status): the connection's sync is stalled.
    [sync_family] = [f for f in procrastinate_counts(pg_store, stale_seconds=STALE_SECONDS) if f.family == "sync"]
    assert sync_family.stalled == 1
    counts = _reap(pg_url)
    # A stalled job with a queued sibling is finished as failed (the sibling does the work);
    # alone, it is retried.
    assert counts == (ReapCounts(retried=0, failed=1) if sibling else ReapCounts(retried=1, failed=0))

    wait_until(lambda: _open(pg_store, key) == 0, "the connection's syncs finished")
    assert len(list_occurrences(pg_store)) == Feed.EVENTS  # nothing lost
    assert _created_events(pg_store) == Feed.EVENTS  # nothing mirrored twice
    # The lock is free: the next ping syncs.
    before = feed.requests
    request_sync(pg_store, registry, connection_id, datetime.now(UTC))
    wait_until(lambda: feed.requests == before + 1 and _open(pg_store, key) == 0, "a later ping synced")
    assert _reap(pg_url) == ReapCounts(retried=0, failed=0)  # nothing stalled any more
