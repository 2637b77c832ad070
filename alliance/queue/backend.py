"""The procrastinate side of the job backend port (core.jobs.backend).

A job is deferred with procrastinate's own ``defer_jobs`` query on the caller's database
connection (procrastinate 3.8+ "external connection"): the psycopg connection under the store's
SQLAlchemy session. So the web process needs no pool of its own, and a job deferred inside a
transaction (the outbox relay, a periodic tick) exists exactly when that transaction commits.
Each defer runs in a savepoint, so an absorbed one (``AlreadyEnqueued``) leaves the caller's
transaction usable.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from procrastinate import exceptions, jobs, manager
from procrastinate.sync_psycopg_connector import SyncPsycopgConnector
from sqlalchemy import text
from sqlalchemy.orm import Session

from core.jobs.backend import RunRequest
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


# :data:`_ABSORB` for several keys, each with its own due time: the keys with a waiting job.
_ABSORB_MANY = text(
    """
    WITH asked AS (
        SELECT * FROM unnest(CAST(:keys AS text[]), CAST(:run_ats AS timestamptz[])) AS a(key, run_at)
    ), waiting AS (
        SELECT j.id, j.queueing_lock, a.run_at
          FROM procrastinate_jobs j JOIN asked a ON j.queueing_lock = a.key
         WHERE j.status = 'todo'
    ), moved AS (
        UPDATE procrastinate_jobs AS j SET scheduled_at = w.run_at
          FROM waiting AS w
         WHERE j.id = w.id AND j.status = 'todo' AND j.scheduled_at > w.run_at
     RETURNING j.id
    )
    SELECT w.queueing_lock,
           (SELECT count(pg_notify('procrastinate_any_queue_v1',
                                   json_build_object('type', 'job_inserted', 'job_id', id)::text))
              FROM moved) AS woken
      FROM waiting AS w
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
        return self._insert_in(session, [self._job(job, args, run_at, queueing_lock, lock, self._clock())])

    @staticmethod
    def _job(
        job: str,
        args: dict[str, Any],
        run_at: datetime | None,
        queueing_lock: str | None,
        lock: str | None,
        now: datetime,
    ) -> jobs.Job:
        return jobs.Job(
            id=None,
            queue=QUEUE,
            lock=lock,
            queueing_lock=queueing_lock,
            task_name=job,
            task_kwargs=args,
            # A job due now is left unscheduled: fetched at once, no polling delay.
            scheduled_at=run_at if run_at is not None and run_at > now else None,
        )

    def _insert_in(self, session: Session, new: list[jobs.Job]) -> bool:
        """Insert the jobs in a savepoint; False (none inserted) when one's queueing lock is taken."""
        try:
            with session.begin_nested():
                # session.connection() inside the savepoint makes SQLAlchemy emit the SAVEPOINT
                # before procrastinate's query runs on the same psycopg connection.
                connection = session.connection().connection.driver_connection
                self._jobs.batch_defer_jobs(new, connection=connection)
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

    def request_many_in(self, session: Session, job: str, requests: Sequence[RunRequest]) -> list[bool]:
        """One statement absorbs every request a waiting job covers, one insert queues the rest."""
        if len(requests) == 1:
            r = requests[0]
            return [self.request_in(session, job, r.args, key=r.key, run_at=r.run_at)]
        params = {"keys": [r.key for r in requests], "run_ats": [r.run_at for r in requests]}
        waiting = {row[0] for row in session.execute(_ABSORB_MANY, params)}
        fresh = [r for r in requests if r.key not in waiting]
        now = self._clock()
        if fresh and not self._insert_in(session, [self._job(job, r.args, r.run_at, r.key, r.key, now) for r in fresh]):
            # Another process queued under one of the keys since the check: key by key, as usual.
            queued = {r.key: self.request_in(session, job, r.args, key=r.key, run_at=r.run_at) for r in fresh}
            return [queued.get(r.key, False) for r in requests]
        return [r.key not in waiting for r in requests]

    def request_in(self, session: Session, job: str, args: dict[str, Any], *, key: str, run_at: datetime) -> bool:
        if session.execute(_ABSORB, {"run_at": run_at, "key": key}).scalar_one():
            return False
        if self.defer_in(session, job, args, run_at=run_at, queueing_lock=key, lock=key):
            return True
        # Another process queued one between the check and the insert: absorbed by it.
        session.execute(_ABSORB, {"run_at": run_at, "key": key})
        return False
