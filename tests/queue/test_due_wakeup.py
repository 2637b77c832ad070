"""A job deferred for later runs when it falls due, not at the worker's next poll.

The worker polls every 60 s here: a sync asked for 1 s ahead (a spaced ping's) that ran within
the 20 s the test waits was woken by its due time. procrastinate's insert NOTIFY woke the worker
only to find nothing due yet.
"""

from __future__ import annotations

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
