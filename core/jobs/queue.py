"""Deferred jobs of the embedded runner: a durable table, so a deferred job survives a restart."""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from sqlalchemy import Table, exists, select
from sqlalchemy.orm import Session

from core.jobs import _lifecycle
from core.jobs.models import DONE, PARKED, RUNNING, QueuedJob
from core.jobs.policy import RetryPolicy
from core.jobs.registry import JobRegistry
from core.redaction import describe_error, format_exception_safely
from core.store import Store

__all__ = ["defer_job", "lock_held", "run_job"]

log = logging.getLogger(__name__)

_JOBS: Table = QueuedJob.__table__  # type: ignore[assignment]


def defer_job(
    store: Store,
    registry: JobRegistry,
    job: str,
    args: dict[str, Any],
    *,
    run_at: datetime,
    queueing_lock: str | None = None,
) -> bool:
    """Queue ``job(store, **args)`` to run at ``run_at`` on the registry's backend (core.jobs.backend).

    With a ``queueing_lock``, a job already waiting under the same lock absorbs this one and
    False is returned (a burst of "sync connection 7" becomes one run).
    """
    registry.job_named(job)  # an unknown name is a programming error: fail here, not in the worker
    return registry.backend.defer(store, job, args, run_at=run_at, queueing_lock=queueing_lock)


def lock_held(session: Session, lock: str, now: datetime, job_id: int) -> bool:
    """Whether a job other than ``job_id`` holding ``lock`` is running (its claim not run out)."""
    return bool(
        session.scalar(
            select(
                exists().where(
                    QueuedJob.queueing_lock == lock,
                    QueuedJob.status == RUNNING,
                    QueuedJob.next_attempt_at > now,
                    QueuedJob.id != job_id,
                )
            )
        )
    )


def run_job(store: Store, registry: JobRegistry, job_id: int, now: datetime, policy: RetryPolicy) -> str | None:
    """Run one due queued job; returns its new status, or None if it was not due or not ours."""
    with store.session() as session:
        lock = session.scalar(select(QueuedJob.queueing_lock).where(QueuedJob.id == job_id))
        # One run per queueing lock at a time: a follow-up waits for the run in progress
        # (procrastinate's ``lock``; core.jobs.coalesce).
        if lock is not None and lock_held(session, lock, now, job_id):
            return None
        claimed = _lifecycle.claim(session, _JOBS, job_id, now, policy, "job", "args")
        if claimed is None:
            return None
        attempt, name, raw_args = claimed
        args = dict(raw_args or {})
    where = {"job": name, "job_id": job_id, "attempt": attempt}
    if attempt > policy.max_attempts:
        with store.session() as session:
            status = _lifecycle.fail(session, _JOBS, job_id, attempt, now, policy, _lifecycle.INTERRUPTED)
        log.error("job parked after an interrupted last attempt", extra=where)
        return status
    try:
        registry.job_named(name)(store, **args)
    except Exception as exc:  # a failing job is retried, never allowed to stop the worker
        error = describe_error(exc)
        with store.session() as session:
            status = _lifecycle.fail(session, _JOBS, job_id, attempt, now, policy, error)
        level = logging.ERROR if status == PARKED else logging.WARNING
        log.log(level, "job failed (%s); now %s", error, status, extra=where)
        log.debug("job failure: %s", format_exception_safely(exc), extra=where)
        return status
    try:
        with store.session() as session:
            _lifecycle.succeed(session, _JOBS, job_id, attempt, now)
    except _lifecycle.LostClaim:
        log.warning("job was taken over by another worker while it ran", extra=where)
        return None
    return DONE
