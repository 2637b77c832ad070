"""Syncs on the PostgreSQL queue: bursts coalesce, a failing sync never wedges its connection."""

from __future__ import annotations

from datetime import UTC, datetime

from alliance.reconcile import request_sync, sync_key
from core.jobs import JobRegistry
from core.mirror import list_occurrences
from core.store import Store
from tests.queue.conftest import Feed, Workers, rows, scalar, wait_until


def _open_jobs(store: Store, key: str) -> list[str]:
    return [
        r[0]
        for r in rows(
            store, "SELECT status FROM procrastinate_jobs WHERE lock = :key AND status IN ('todo', 'doing')", key=key
        )
    ]


def _settled(store: Store, key: str) -> bool:
    return not _open_jobs(store, key)


def test_two_hundred_pings_in_a_second_give_at_most_two_syncs(
    pg_store: Store, registry: JobRegistry, workers: Workers, feed: Feed, connection_id: int
) -> None:
    workers.start("--concurrency", "4")  # free slots: only the lock keeps a second sync waiting
    feed.hold()
    assert request_sync(pg_store, registry, connection_id, datetime.now(UTC)) is True
    wait_until(feed.started.is_set, "the first sync reached the feed")
    # 199 more pings while that sync runs: one follow-up waits, the rest are absorbed.
    queued = [request_sync(pg_store, registry, connection_id, datetime.now(UTC)) for _ in range(199)]
    assert queued.count(True) == 1
    assert sorted(_open_jobs(pg_store, sync_key(connection_id))) == ["doing", "todo"]
    feed.release.set()
    wait_until(lambda: _settled(pg_store, sync_key(connection_id)), "both syncs finished")
    assert feed.requests == 2  # the run in progress and exactly one follow-up: none lost, none extra
    assert len(list_occurrences(pg_store)) == Feed.EVENTS
    # The sync's outbox events reached their handlers through the NOTIFY-woken relay, each once.
    wait_until(lambda: scalar(pg_store, "SELECT count(*) FROM outbox WHERE processed_at IS NULL") == 0, "outbox done")
    deliveries = rows(pg_store, "SELECT status, attempts FROM outbox_deliveries")
    assert deliveries and {tuple(d) for d in deliveries} == {("done", 1)}


def test_a_failing_sync_while_another_waits_never_blocks_the_connection(
    pg_store: Store, registry: JobRegistry, workers: Workers, feed: Feed, connection_id: int
) -> None:
    # reference/scale.md 5.2: with a procrastinate retry strategy, the failing job's retry collides
    # with the waiting sibling's queueing lock and the connection stays blocked for good.
    workers.start("--concurrency", "2")
    key = sync_key(connection_id)
    feed.fail_next = 1
    feed.hold()
    request_sync(pg_store, registry, connection_id, datetime.now(UTC))
    wait_until(feed.started.is_set, "the failing sync reached the feed")
    assert request_sync(pg_store, registry, connection_id, datetime.now(UTC)) is True  # waits behind it
    feed.release.set()
    wait_until(lambda: _settled(pg_store, key), "the failing sync and the waiting one finished")
    assert feed.requests == 2
    assert len(list_occurrences(pg_store)) == Feed.EVENTS  # the waiting sync ran and mirrored the feed
    # Still not blocked: a later ping syncs again.
    request_sync(pg_store, registry, connection_id, datetime.now(UTC))
    wait_until(lambda: feed.requests == 3 and _settled(pg_store, key), "a later ping synced")
    assert scalar(pg_store, "SELECT count(*) FROM procrastinate_jobs WHERE lock = :k AND status = 'doing'", k=key) == 0
