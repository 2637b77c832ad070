"""A debounced burst of pings on the PostgreSQL queue: one job, due after the delay, one sync."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from alliance.reconcile import request_sync, sync_key
from core.jobs import JobRegistry
from core.store import Store
from tests.queue.conftest import Feed, Workers, rows, wait_until

pytestmark = pytest.mark.postgres

DEBOUNCE = timedelta(seconds=1)


def test_a_debounced_burst_becomes_one_sync_due_after_the_delay(
    pg_store: Store, registry: JobRegistry, workers: Workers, feed: Feed, connection_id: int
) -> None:
    first = datetime.now(UTC)
    assert request_sync(pg_store, registry, connection_id, first, DEBOUNCE) is True
    later = [request_sync(pg_store, registry, connection_id, datetime.now(UTC), DEBOUNCE) for _ in range(49)]
    assert not any(later)  # they joined the waiting run
    (scheduled_at,) = [
        r[0]
        for r in rows(
            pg_store, "SELECT scheduled_at FROM procrastinate_jobs WHERE lock = :key", key=sync_key(connection_id)
        )
    ]
    assert scheduled_at == first + DEBOUNCE  # due one delay after the first ping, not pushed back by the others
    workers.start("--concurrency", "2")  # only now: however slow the burst was, it ran before the sync could
    wait_until(
        lambda: rows(
            pg_store,
            "SELECT 1 FROM procrastinate_jobs WHERE status = 'succeeded' AND lock = :key",
            key=sync_key(connection_id),
        ),
        "the sync ran",
    )
    assert feed.requests == 1
