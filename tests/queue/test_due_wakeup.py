"""A job runs when it can, not at the worker's next poll.

The worker polls every 60 s here, and a job that ran within the 20 s a test waits was woken by
what made it runnable: a sync asked for 1 s ahead (a spaced ping's) by its due time, where
procrastinate's insert NOTIFY woke the worker only to find nothing due yet; the follow-up sync a
ping queued during a running sync by that sync finishing, where the NOTIFY came while the
connection's lock was held.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from alliance.queue.worker import QueueWorker
from alliance.reconcile import request_sync, sync_key
from core.jobs import JobRegistry
from core.store import Store
from tests.queue.conftest import Feed, rows, scalar, settings_from, wait_until

pytestmark = pytest.mark.postgres

POLL_SECONDS = 60


@pytest.fixture
def worker(pg_store: Store, env: dict[str, str]) -> Iterator[QueueWorker]:
    w = QueueWorker(pg_store, settings_from({**env, "ALLIANCE_WORKER_POLL_SECONDS": str(POLL_SECONDS)}))
    w.start()
    try:
        yield w
    finally:
        w.stop(30)


def _settled(store: Store) -> bool:
    return not scalar(store, "SELECT count(*) FROM procrastinate_jobs WHERE status IN ('todo', 'doing')")


def _woken_by_its_due_time(store: Store, connection_id: int) -> bool:
    """The latest sync started with no other job deferred between its due time and its start:
    no insert's NOTIFY (procrastinate's per-minute upkeep, a periodic tick) can have woken the
    worker for it."""
    return not scalar(
        store,
        """
        SELECT count(*) FROM procrastinate_events other,
               (SELECT j.id, j.scheduled_at, e.at AS started
                  FROM procrastinate_jobs j JOIN procrastinate_events e ON e.job_id = j.id AND e.type = 'started'
                 WHERE j.lock = :key ORDER BY j.id DESC LIMIT 1) sync
         WHERE other.type = 'deferred' AND other.job_id <> sync.id
           AND other.at >= sync.scheduled_at AND other.at <= sync.started
        """,
        key=sync_key(connection_id),
    )


def _syncs_done(store: Store, connection_id: int) -> int:
    return int(
        scalar(
            store,
            "SELECT count(*) FROM procrastinate_jobs WHERE status = 'succeeded' AND lock = :key",
            key=sync_key(connection_id),
        )
    )


def test_a_job_deferred_for_later_runs_when_due_not_at_the_next_poll(
    pg_store: Store, registry: JobRegistry, worker: QueueWorker, feed: Feed, connection_id: int
) -> None:
    wait_until(lambda: worker.worker_id is not None and _settled(pg_store), "the worker started and went idle")

    asked = datetime.now(UTC)
    assert request_sync(pg_store, registry, connection_id, asked, timedelta(seconds=1)) is True
    [(scheduled_at,)] = rows(
        pg_store, "SELECT scheduled_at FROM procrastinate_jobs WHERE lock = :key", key=sync_key(connection_id)
    )
    assert scheduled_at == asked + timedelta(seconds=1)
    # Bounded by attempts (20 s), a third of the poll interval: the poll cannot have found it.
    wait_until(lambda: _syncs_done(pg_store, connection_id) == 1, "the sync ran when due", attempts=200)
    assert feed.requests == 1
    assert _woken_by_its_due_time(pg_store, connection_id)

    # The timer is set again after each idle fetch: a second request, further ahead, runs too.
    assert request_sync(pg_store, registry, connection_id, datetime.now(UTC), timedelta(seconds=2)) is True
    wait_until(lambda: _syncs_done(pg_store, connection_id) == 2, "the second sync ran when due", attempts=200)
    assert feed.requests == 2
    assert _woken_by_its_due_time(pg_store, connection_id)


def _started_with_no_insert_since(store: Store, connection_id: int) -> bool:
    """The latest sync started with no job deferred between the end of the sync before it and its
    start: no insert's NOTIFY can have woken the worker for it."""
    return not scalar(
        store,
        """
        WITH syncs AS (
            SELECT j.id,
                   (SELECT max(at) FROM procrastinate_events WHERE job_id = j.id AND type = 'started') AS started,
                   (SELECT max(at) FROM procrastinate_events WHERE job_id = j.id AND type = 'succeeded') AS ended
              FROM procrastinate_jobs j WHERE j.lock = :key
        ), last_two AS (SELECT * FROM syncs ORDER BY id DESC LIMIT 2)
        SELECT count(*) FROM procrastinate_events other
         WHERE other.type = 'deferred' AND other.job_id NOT IN (SELECT id FROM last_two)
           AND other.at >= (SELECT min(ended) FROM last_two)
           AND other.at <= (SELECT max(started) FROM last_two)
        """,
        key=sync_key(connection_id),
    )


def test_a_follow_up_sync_runs_when_the_sync_before_it_ends_not_at_the_next_poll(
    pg_store: Store, registry: JobRegistry, worker: QueueWorker, feed: Feed, connection_id: int
) -> None:
    wait_until(lambda: worker.worker_id is not None and _settled(pg_store), "the worker started and went idle")
    # One sync to mirror what the feed has, and its deliveries run: the syncs below change nothing,
    # so no delivery job is queued (whose insert, or whose run, would wake the worker anyway).
    assert request_sync(pg_store, registry, connection_id, datetime.now(UTC), timedelta(0)) is True
    wait_until(lambda: _syncs_done(pg_store, connection_id) == 1 and _settled(pg_store), "the feed mirrored")
    time.sleep(1)  # the deliveries' own jobs and their NOTIFYs are over

    feed.requests = 0
    feed.started.clear()
    feed.release.clear()  # the provider is slow: the first sync holds the connection's lock
    assert request_sync(pg_store, registry, connection_id, datetime.now(UTC), timedelta(0)) is True
    assert feed.started.wait(20), "the first sync called the feed"
    # A ping during the sync queues one follow-up; its insert's NOTIFY finds the lock held.
    assert request_sync(pg_store, registry, connection_id, datetime.now(UTC), timedelta(0)) is True
    time.sleep(1)  # let the worker take that NOTIFY (and find nothing it may run) before the lock goes
    assert feed.requests == 1
    feed.release.set()

    # Bounded by attempts (20 s), a third of the poll interval: the poll cannot have found it.
    wait_until(lambda: _syncs_done(pg_store, connection_id) == 3, "the follow-up sync ran", attempts=200)
    assert feed.requests == 2
    assert _started_with_no_insert_since(pg_store, connection_id)


def test_the_worker_hooks_into_methods_procrastinate_still_has() -> None:
    """The wake-ups above override procrastinate's private worker methods; an upgrade that renames
    one would silently drop a wake-up (jobs would wait for the poll again), so it fails here."""
    from procrastinate.worker import Worker

    from alliance.queue.worker import DueWakingWorker

    for name in ("_fetch_and_process_jobs", "_handle_notification", "_process_job"):
        assert name in vars(DueWakingWorker)
        assert callable(vars(Worker).get(name)), f"procrastinate's Worker no longer defines {name}"
