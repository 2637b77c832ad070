"""Periodic jobs of the registry on procrastinate: exactly one run per tick across all workers.

Every worker calls :func:`tick` about once a second. In one transaction it locks the due rows of
``periodic_jobs`` (``FOR UPDATE SKIP LOCKED``), moves each one interval on (on its grid: a tick
missed while no worker ran is skipped, not caught up) and defers the job under
``queueing_lock = lock = "periodic:<name>"``. The move and the job commit together, and a row is
due for one worker only, so each tick becomes exactly one job; a run still waiting absorbs the
next tick, and two runs of one periodic job never overlap. The run itself records when it started
and finished and its error, as on the embedded worker (alliance.queue.tasks).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select, update

from alliance.queue.backend import ProcrastinateBackend
from core.jobs import JobRegistry, PeriodicJobState, RetryPolicy
from core.jobs.periodic import ensure_periodic
from core.store import Store

__all__ = ["TICK_ARG", "periodic_key", "tick"]

# The tick's instant travels with the job (ISO 8601), for the record; job functions do not see it.
TICK_ARG = "tick"


def periodic_key(name: str) -> str:
    return f"periodic:{name}"


def tick(
    store: Store,
    registry: JobRegistry,
    backend: ProcrastinateBackend,
    now: datetime,
    policy: RetryPolicy,
    *,
    ensure: bool = True,
) -> int:
    """Defer every periodic job due at ``now`` that this worker wins; how many were deferred.

    ``ensure=False`` skips creating missing state rows (a worker does that on its first tick and
    then once a minute, not every second: one transaction less per tick).
    """
    specs = {s.name: s for s in registry.periodic}
    if not specs:
        return 0
    if ensure:
        ensure_periodic(store, registry, now, policy)
    deferred = 0
    with store.session() as session:
        due = session.execute(
            select(PeriodicJobState.name, PeriodicJobState.next_run_at)
            .where(PeriodicJobState.name.in_(specs), PeriodicJobState.next_run_at <= now)
            .with_for_update(skip_locked=True)
        ).all()
        for name, due_at in due:
            every = specs[name].every
            missed = (now - due_at) // every  # whole intervals that passed without a run
            next_run = due_at + every * (missed + 1)
            session.execute(update(PeriodicJobState).where(PeriodicJobState.name == name).values(next_run_at=next_run))
            key = periodic_key(name)
            tick_at = due_at + every * missed
            if backend.defer_in(session, name, {TICK_ARG: tick_at.isoformat()}, queueing_lock=key, lock=key):
                deferred += 1
    return deferred
