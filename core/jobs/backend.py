"""The job backend port: where a deferred job is written, so any queue can take the embedded table's place.

Callers (webhooks, sweeps, job functions) defer through :func:`core.jobs.queue.defer_job` and
:func:`core.jobs.coalesce.request_run` with ``(store, registry, ...)`` (``request_run_in`` with the
caller's session, to request inside its transaction); they hand the work to ``registry.backend``.
The default, :class:`EmbeddedBackend`, writes the ``queued_jobs`` table the in-process runner
polls. A distributed queue (procrastinate, ``alliance.queue``) provides its own backend with the
same methods; nothing here imports it.

Meaning of the two locks (procrastinate's, reference/scale.md section 4):

- ``queueing_lock``: at most one job *waits* under it; a second defer is absorbed (False);
- ``lock``: at most one job *runs* under it; a waiting one starts when the running one ends.

The embedded table uses its ``queueing_lock`` column for both.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, NamedTuple, Protocol, runtime_checkable

from sqlalchemy import Table, exists, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from core.jobs.models import PENDING, QueuedJob
from core.store import Store

__all__ = ["EmbeddedBackend", "JobBackend", "RunRequest"]

_JOBS: Table = QueuedJob.__table__  # type: ignore[assignment]


@runtime_checkable
class JobBackend(Protocol):
    """Where deferred jobs go."""

    name: str

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
        """Queue ``job(store, **args)`` at ``run_at``; False when a job waiting under ``queueing_lock`` absorbs it."""
        ...

    def request_in(self, session: Session, job: str, args: dict[str, Any], *, key: str, run_at: datetime) -> bool:
        """Coalesced request inside the caller's transaction (the job exists exactly when it commits):
        defer under ``queueing_lock = lock = key``; when a job waiting under ``key`` absorbs it, move
        that job to ``run_at`` if it was due later, and return False."""
        ...

    def request_many_in(self, session: Session, job: str, requests: Sequence[RunRequest]) -> list[bool]:
        """:meth:`request_in` for several keys at once (one per request, no key twice), as a
        webhook's batch of pings asks; one result per request, in order."""
        ...


class RunRequest(NamedTuple):
    """One coalesced run request: the job's arguments, its key, when it should run."""

    args: dict[str, Any]
    key: str
    run_at: datetime


def _pending_row(job: str, args: dict[str, Any], key: str | None, run_at: datetime) -> dict[str, Any]:
    return {
        "job": job,
        "args": args,
        "queueing_lock": key,
        "status": PENDING,
        "attempts": 0,
        "next_attempt_at": run_at,
        "created_at": run_at,
        "updated_at": run_at,
    }


class EmbeddedBackend:
    """The ``queued_jobs`` table of the embedded runner (SQLite or PostgreSQL)."""

    name = "embedded"

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
        # The embedded runner's queueing lock is its run lock too (core.jobs.queue.run_job).
        key = queueing_lock if queueing_lock is not None else lock
        row = _pending_row(job, args, key, run_at)
        try:
            with store.session() as session:
                if key is not None:
                    waiting = session.scalar(
                        select(exists().where(QueuedJob.queueing_lock == key, QueuedJob.status == PENDING))
                    )
                    if waiting:
                        return False
                session.execute(_JOBS.insert(), [row])
        except IntegrityError:  # another process queued the same lock between our check and insert
            return False
        return True

    def request_many_in(self, session: Session, job: str, requests: Sequence[RunRequest]) -> list[bool]:
        # The in-process runner's table: the few pings of a batch, one by one.
        return [self.request_in(session, job, r.args, key=r.key, run_at=r.run_at) for r in requests]

    def request_in(self, session: Session, job: str, args: dict[str, Any], *, key: str, run_at: datetime) -> bool:
        # The waiting job, if any, is moved first: on SQLite that write takes the database's write
        # lock, so no other process can queue under the key between the check and the insert.
        session.execute(
            update(QueuedJob)
            .where(QueuedJob.queueing_lock == key, QueuedJob.status == PENDING, QueuedJob.next_attempt_at > run_at)
            .values(next_attempt_at=run_at)
            .execution_options(synchronize_session=False)
        )
        if session.scalar(select(exists().where(QueuedJob.queueing_lock == key, QueuedJob.status == PENDING))):
            return False
        row = _pending_row(job, args, key, run_at)
        if session.get_bind().dialect.name == "sqlite":
            session.execute(_JOBS.insert(), [row])
            return True
        try:  # PostgreSQL: another process may queue under the key meanwhile; its job absorbs this one
            with session.begin_nested():
                session.execute(_JOBS.insert(), [row])
        except IntegrityError:
            return False
        return True
