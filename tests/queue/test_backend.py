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
