"""Periodic jobs: due times persisted per job name and claimed with a conditional UPDATE.

Persisting ``next_run_at`` means a restart fires only what is really due; the claim (which also
moves ``next_run_at`` one interval on and leases the run) means that of several workers polling
at the same moment exactly one runs the job. A failed run is logged and stored in ``last_error``;
it is not retried early: the next period is the retry.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime
from functools import partial

from sqlalchemy import or_, select, update
from sqlalchemy.dialects import postgresql, sqlite

from core.jobs.models import PeriodicJobState
from core.jobs.policy import RetryPolicy
from core.jobs.registry import JobRegistry, PeriodicSpec
from core.redaction import describe_error, format_exception_safely
from core.store import Store

__all__ = [
    "claim_periodic",
    "ensure_periodic",
    "mark_periodic_finished",
    "mark_periodic_started",
    "run_due_periodic",
    "run_periodic_job",
]

log = logging.getLogger(__name__)


def ensure_periodic(store: Store, registry: JobRegistry, now: datetime, policy: RetryPolicy) -> None:
    """Give every registered periodic job a state row; a new job's first run is spread over one interval."""
    specs = registry.periodic
    if not specs:
        return
    with store.session() as session:
        known = {
            name: next_run
            for name, next_run in session.execute(select(PeriodicJobState.name, PeriodicJobState.next_run_at))
        }
        new_rows = [
            # A random first offset keeps a fleet of fresh workers (or many jobs) from all firing
            # on their first tick.
            {"name": s.name, "next_run_at": now + s.every * policy.random()}
            for s in specs
            if s.name not in known
        ]
        if new_rows:
            dialect = session.get_bind().dialect.name
            stmt = (postgresql.insert if dialect == "postgresql" else sqlite.insert)(PeriodicJobState)
            session.execute(stmt.on_conflict_do_nothing(index_elements=["name"]), new_rows)
        for s in specs:
            # An interval shortened in the settings takes effect now, not after the old interval.
            if s.name in known and known[s.name] > now + s.every:
                session.execute(
                    update(PeriodicJobState).where(PeriodicJobState.name == s.name).values(next_run_at=now + s.every)
                )


def claim_periodic(store: Store, spec: PeriodicSpec, now: datetime, policy: RetryPolicy) -> datetime | None:
    """The end of this worker's lease if it won the run of ``spec`` that is due at ``now``, else None."""
    lease = now + policy.claim_for
    with store.session() as session:
        result = session.execute(
            update(PeriodicJobState)
            .where(
                PeriodicJobState.name == spec.name,
                PeriodicJobState.next_run_at <= now,
                or_(PeriodicJobState.running_until.is_(None), PeriodicJobState.running_until <= now),
            )
            .values(next_run_at=now + spec.every, running_until=lease, last_started_at=now)
        )
        return lease if result.rowcount == 1 else None  # type: ignore[attr-defined]


def _finish(store: Store, name: str, lease: datetime, error: str | None) -> None:
    with store.session() as session:
        session.execute(
            update(PeriodicJobState)
            # Only our own lease: a run that overstayed it may have been taken over meanwhile.
            .where(PeriodicJobState.name == name, PeriodicJobState.running_until == lease)
            .values(running_until=None, last_finished_at=datetime.now(UTC), last_error=error)
        )


def run_periodic_job(store: Store, name: str, job: Callable[[], None]) -> str | None:
    """Run one periodic job; None when it succeeded, else its one-line error (logged, not raised).

    Not raised: one failing periodic job must not stop the others or the worker, and the next
    period is its retry (on either queue).
    """
    try:
        job()
    except Exception as exc:
        error = describe_error(exc)
        log.warning("periodic job failed (%s)", error, extra={"job": name})
        log.debug("periodic job failure: %s", format_exception_safely(exc), extra={"job": name})
        return error
    return None


def mark_periodic_started(store: Store, name: str, at: datetime) -> None:
    """Record that a run of ``name`` started (a queue whose own locks keep runs apart: no lease)."""
    with store.session() as session:
        session.execute(update(PeriodicJobState).where(PeriodicJobState.name == name).values(last_started_at=at))


def mark_periodic_finished(store: Store, name: str, at: datetime, error: str | None) -> None:
    """Record how the run of ``name`` that started last ended (``error`` None: it succeeded)."""
    with store.session() as session:
        session.execute(
            update(PeriodicJobState).where(PeriodicJobState.name == name).values(last_finished_at=at, last_error=error)
        )


def run_due_periodic(store: Store, registry: JobRegistry, now: datetime, policy: RetryPolicy) -> int:
    """Run every periodic job that is due and that this worker claims; returns how many ran."""
    ensure_periodic(store, registry, now, policy)
    ran = 0
    for spec in registry.periodic:
        lease = claim_periodic(store, spec, now, policy)
        if lease is None:
            continue
        ran += 1
        error = run_periodic_job(store, spec.name, partial(registry.job_named(spec.name), store))
        _finish(store, spec.name, lease, error)
    return ran
