"""The job backend port: which queue a registry writes to, and coalescing on procrastinate."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from alliance.jobs import build_registry
from alliance.queue.backend import ProcrastinateBackend
from alliance.queue.selection import QueueConfigError, queue_kind
from alliance.reconcile import request_sync, sync_key
from alliance.settings import Settings
from core.jobs import EmbeddedBackend, JobRegistry
from core.jobs.queue import defer_job
from core.store import Store
from tests.queue.conftest import rows, scalar

PG = "postgresql+psycopg://alliance@db.internal/alliance"


@pytest.mark.parametrize(
    ("database_url", "queue", "expected"),
    [
        (None, None, "embedded"),
        (PG, None, "procrastinate"),
        (PG, "embedded", "embedded"),
        (PG, "procrastinate", "procrastinate"),
        (None, "embedded", "embedded"),
    ],
)
def test_the_queue_follows_the_database_unless_set(
    tmp_path: Path, database_url: str | None, queue: str | None, expected: str
) -> None:
    settings = Settings(home=tmp_path, database_url=database_url, queue=queue)  # type: ignore[arg-type]
    assert queue_kind(settings) == expected
    backend = build_registry(settings).backend
    assert isinstance(backend, ProcrastinateBackend if expected == "procrastinate" else EmbeddedBackend)


def test_procrastinate_on_sqlite_is_refused_with_the_fix_in_the_message(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path, queue="procrastinate")  # type: ignore[arg-type]
    with pytest.raises(QueueConfigError, match="needs PostgreSQL"):
        build_registry(settings)


@pytest.mark.postgres
def test_a_ping_moves_a_waiting_reconciliation_sync_forward(
    pg_store: Store, registry: JobRegistry, connection_id: int
) -> None:
    now = datetime.now(UTC)
    # The reconciliation sweep planned this connection's sync in ten minutes...
    assert request_sync(pg_store, registry, connection_id, now, timedelta(minutes=10)) is True
    # ...a push ping now is absorbed into it and brings it forward instead of waiting.
    assert request_sync(pg_store, registry, connection_id, now) is False
    [(scheduled_at, lock, queueing_lock)] = rows(
        pg_store, "SELECT scheduled_at, lock, queueing_lock FROM procrastinate_jobs WHERE status = 'todo'"
    )
    assert scheduled_at <= now + timedelta(seconds=1)
    assert lock == queueing_lock == sync_key(connection_id)


@pytest.mark.postgres
def test_defer_job_callers_keep_their_signature_and_get_one_waiting_job_per_lock(
    pg_store: Store, registry: JobRegistry, connection_id: int
) -> None:
    now = datetime.now(UTC)
    key = f"outlook.sync:{connection_id}"
    args = {"connection_id": connection_id}
    assert defer_job(pg_store, registry, "outlook.sync", args, run_at=now, queueing_lock=key) is True
    assert defer_job(pg_store, registry, "outlook.sync", args, run_at=now, queueing_lock=key) is False
    assert (
        scalar(pg_store, "SELECT count(*) FROM procrastinate_jobs WHERE queueing_lock = :k AND lock = :k", k=key) == 1
    )
    assert scalar(pg_store, "SELECT count(*) FROM queued_jobs") == 0  # nothing in the embedded table


def _add_connections(store: Store, count: int) -> list[int]:
    from core.mirror import add_connection, ensure_therapist

    therapist = ensure_therapist(store, "batch@example.org")
    return [
        add_connection(store, therapist, "ics", f"feed {i}", {"source": f"https://example.org/{i}.ics"})
        for i in range(count)
    ]


def _waiting_syncs(store: Store) -> dict[str, datetime]:
    return dict(rows(store, "SELECT queueing_lock, scheduled_at FROM procrastinate_jobs WHERE status = 'todo'"))


@pytest.mark.postgres
def test_a_batch_of_sync_requests_queues_the_new_ones_and_folds_the_rest_into_waiting_runs(
    pg_store: Store, registry: JobRegistry
) -> None:
    from alliance.reconcile import SyncWanted, request_syncs_in

    a, b, c = _add_connections(pg_store, 3)
    now = datetime.now(UTC)
    # b already has a run planned in ten minutes (the reconciliation sweep's).
    assert request_sync(pg_store, registry, b, now, timedelta(minutes=10)) is True

    with pg_store.session() as session:
        queued = request_syncs_in(
            session,
            registry,
            [
                SyncWanted(a, now, timedelta(0), None),
                SyncWanted(b, now, timedelta(0), None),
                SyncWanted(c, now, timedelta(0), now + timedelta(minutes=3)),
            ],  # c is backing off
        )
    assert queued == [True, False, True]
    waiting = _waiting_syncs(pg_store)
    assert set(waiting) == {sync_key(a), sync_key(b), sync_key(c)}  # one run each, none twice
    assert waiting[sync_key(b)] <= now + timedelta(seconds=1)  # the ping brought b's run forward
    assert waiting[sync_key(c)] >= now + timedelta(minutes=3)  # not before c's backoff ends
    assert scalar(pg_store, "SELECT count(*) FROM procrastinate_jobs WHERE lock <> queueing_lock") == 0


@pytest.mark.postgres
def test_a_run_queued_by_another_process_during_the_batch_absorbs_that_request_and_the_rest_still_queue(
    pg_store: Store, registry: JobRegistry
) -> None:
    """Between the batch's look at the waiting runs and its insert, another web process queues a
    run for one of its connections: the insert as a whole is refused, and each request is then
    made on its own, so that connection keeps one run and the others get theirs."""
    from sqlalchemy import event

    from alliance.reconcile import SyncWanted, request_syncs_in

    a, b, c = _add_connections(pg_store, 3)
    now = datetime.now(UTC)
    other_process = ProcrastinateBackend()

    def queue_b_elsewhere(conn: object, cursor: object, statement: str, *args: object) -> None:
        if "WITH asked AS" in statement:  # right after the batch looked for waiting runs
            with pg_store.session() as elsewhere:  # another connection, committed at once
                assert other_process.request_in(
                    elsewhere, "sync.connection", {"connection_id": b}, key=sync_key(b), run_at=now
                )

    event.listen(pg_store.engine, "after_cursor_execute", queue_b_elsewhere)
    try:
        with pg_store.session() as session:
            queued = request_syncs_in(session, registry, [SyncWanted(x, now, timedelta(0), None) for x in (a, b, c)])
    finally:
        event.remove(pg_store.engine, "after_cursor_execute", queue_b_elsewhere)
    assert queued == [True, False, True]
    assert sorted(_waiting_syncs(pg_store)) == sorted([sync_key(a), sync_key(b), sync_key(c)])
    assert scalar(pg_store, "SELECT count(*) FROM procrastinate_jobs") == 3
