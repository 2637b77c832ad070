"""Periodic jobs: due times persisted per job name and claimed with a conditional UPDATE.

Persisting ``next_run_at`` means a restart fires only what is really due; the claim (which also
moves ``next_run_at`` one interval on and leases the run) means that of several workers polling
at the same moment exactly one runs the job. A failed run is logged and stored in ``last_error``;
it is not retried early: the next period is the retry.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from sqlalchemy import or_, select, update
from sqlalchemy.dialects import postgresql, sqlite

from core.jobs.models import PeriodicJobState
from core.jobs.policy import RetryPolicy
from core.jobs.registry import JobRegistry, PeriodicSpec
from core.redaction import describe_error, format_exception_safely
from core.store import Store

__all__ = ["claim_periodic", "ensure_periodic", "run_due_periodic"]

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


def run_due_periodic(store: Store, registry: JobRegistry, now: datetime, policy: RetryPolicy) -> int:
    """Run every periodic job that is due and that this worker claims; returns how many ran."""
    ensure_periodic(store, registry, now, policy)
    ran = 0
    for spec in registry.periodic:
        lease = claim_periodic(store, spec, now, policy)
        if lease is None:
            continue
        ran += 1
        error: str | None = None
        try:
            registry.job_named(spec.name)(store)
        except Exception as exc:  # one failing periodic job must not stop the others or the worker
            error = describe_error(exc)
            log.warning("periodic job failed (%s)", error, extra={"job": spec.name})
            log.debug("periodic job failure: %s", format_exception_safely(exc), extra={"job": spec.name})
        _finish(store, spec.name, lease, error)
    return ran
