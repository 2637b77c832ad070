"""The procrastinate side of the job backend port (core.jobs.backend).

A job is deferred with procrastinate's own ``defer_jobs`` query on the caller's database
connection (procrastinate 3.8+ "external connection"): the psycopg connection under the store's
SQLAlchemy session. So the web process needs no pool of its own, and a job deferred inside a
transaction (the outbox relay, a periodic tick) exists exactly when that transaction commits.
Each defer runs in a savepoint, so an absorbed one (``AlreadyEnqueued``) leaves the caller's
transaction usable.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from procrastinate import exceptions, jobs, manager
from procrastinate.sync_psycopg_connector import SyncPsycopgConnector
from sqlalchemy import text
from sqlalchemy.orm import Session

from core.store import Store

__all__ = ["QUEUE", "ProcrastinateBackend"]

QUEUE = "default"

# A request that a waiting job can absorb, checked before any insert: most pings of a burst find
# their connection's sync already queued, and an insert that procrastinate's unique index refuses
# costs a savepoint, an error and its rollback (reference/scale.md: queueing locks). The waiting
# job is moved earlier if it was due later (a ping after the reconciliation planned it in a
# minute), and the workers are woken the way procrastinate's insert trigger does. A job seen
# waiting here starts its work after this request arrived, so it covers it even if a worker
# takes it before this transaction commits; the status is checked again on the row the UPDATE
# locks, so a job that has started meanwhile is left alone.
_ABSORB = text(
    """
    WITH waiting AS (
        SELECT id FROM procrastinate_jobs WHERE queueing_lock = :key AND status = 'todo'
    ), moved AS (
        UPDATE procrastinate_jobs AS j SET scheduled_at = :run_at
          FROM waiting AS w
         WHERE j.id = w.id AND j.status = 'todo' AND j.scheduled_at > :run_at
     RETURNING j.id
    )
    SELECT (SELECT count(*) FROM waiting) AS waiting,
           (SELECT count(pg_notify('procrastinate_any_queue_v1',
                                   json_build_object('type', 'job_inserted', 'job_id', id)::text))
              FROM moved) AS woken
    """
)


class ProcrastinateBackend:
    """Defers into procrastinate's ``procrastinate_jobs`` table through the store's connection."""

    name = "procrastinate"

    def __init__(self, *, clock: Any = None) -> None:
        # Never opened: it only runs queries on connections it is given.
        self._jobs = manager.JobManager(SyncPsycopgConnector())
        self._clock = clock or (lambda: datetime.now(UTC))

    def defer_in(
        self,
        session: Session,
        job: str,
        args: dict[str, Any],
        *,
        run_at: datetime | None = None,
        queueing_lock: str | None = None,
        lock: str | None = None,
    ) -> bool:
        """Defer inside ``session``'s transaction; False when a job waiting under ``queueing_lock`` absorbs it."""
        # A job due now is left unscheduled: fetched at once, no polling delay.
        scheduled = run_at if run_at is not None and run_at > self._clock() else None
        new = jobs.Job(
            id=None,
            queue=QUEUE,
            lock=lock,
            queueing_lock=queueing_lock,
            task_name=job,
            task_kwargs=args,
            scheduled_at=scheduled,
        )
        try:
            with session.begin_nested():
                # session.connection() inside the savepoint makes SQLAlchemy emit the SAVEPOINT
                # before procrastinate's query runs on the same psycopg connection.
                connection = session.connection().connection.driver_connection
                self._jobs.defer_job(new, connection=connection)
        except exceptions.AlreadyEnqueued:
            return False
        return True

    def defer(
        self,
        store: Store,
        job: str,
        args: dict[str, Any],
        *,
        run_at: datetime,
        queueing_lock: str | None = None,
        lock: str | None = None,
    ) -> bool:
        # As on the embedded table, a queueing lock is also the run lock unless another is given
        # (outlook.sync: one sync of a mailbox at a time, one more waiting).
        run_lock = lock if lock is not None else queueing_lock
        with store.session() as session:
            return self.defer_in(session, job, args, run_at=run_at, queueing_lock=queueing_lock, lock=run_lock)

    def request_in(self, session: Session, job: str, args: dict[str, Any], *, key: str, run_at: datetime) -> bool:
        if session.execute(_ABSORB, {"run_at": run_at, "key": key}).scalar_one():
            return False
        if self.defer_in(session, job, args, run_at=run_at, queueing_lock=key, lock=key):
            return True
        # Another process queued one between the check and the insert: absorbed by it.
        session.execute(_ABSORB, {"run_at": run_at, "key": key})
        return False
