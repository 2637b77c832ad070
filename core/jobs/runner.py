"""The runner interface and its in-process implementation (the embedded default).

The distributed queue (procrastinate, ``alliance.queue``) registers every function of the
:class:`JobRegistry` as a task under the same name, runs :meth:`JobRegistry.periodic` once per
tick across workers, takes deferred jobs through ``registry.backend`` (core.jobs.backend) and runs
the outbox through :func:`relay_in` plus one task per event calling :func:`deliver_event`. Job
functions never know which runner calls them.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Protocol, runtime_checkable

from sqlalchemy import Table

from core.jobs import _lifecycle
from core.jobs.models import OutboxDelivery, QueuedJob
from core.jobs.outbox import deliver_one, mark_finished_events, relay
from core.jobs.periodic import run_due_periodic
from core.jobs.policy import RetryPolicy
from core.jobs.queue import defer_job, run_job
from core.jobs.registry import JobRegistry
from core.store import Store

__all__ = ["InProcessRunner", "JobRunner"]

_DELIVERIES: Table = OutboxDelivery.__table__  # type: ignore[assignment]
_JOBS: Table = QueuedJob.__table__  # type: ignore[assignment]


@runtime_checkable
class JobRunner(Protocol):
    """What the rest of Alliance needs from a job runner."""

    def defer(
        self, job: str, /, *, run_at: datetime | None = None, queueing_lock: str | None = None, **args: Any
    ) -> bool:
        """Queue ``job(store, **args)``; False when a job waiting under ``queueing_lock`` absorbs it."""
        ...

    def run_pending(self, now: datetime | None = None) -> int:
        """Run what is due now (outbox deliveries, periodic and deferred jobs); how many ran."""
        ...


def _utcnow() -> datetime:
    return datetime.now(UTC)


class InProcessRunner:
    """Runs jobs in the calling thread, with all state in the store (SQLite or PostgreSQL).

    Several of them (threads or processes on one database) may poll at once: every unit of work
    is claimed with a conditional UPDATE first.
    """

    def __init__(
        self,
        store: Store,
        registry: JobRegistry,
        *,
        policy: RetryPolicy | None = None,
        clock: Callable[[], datetime] = _utcnow,
        batch: int = 100,
        on_progress: Callable[[], None] | None = None,
    ) -> None:
        self.store = store
        self.registry = registry
        self.policy = policy or RetryPolicy()
        self.clock = clock
        self.batch = batch
        # Called after every unit of work, so a worker can keep its heartbeat fresh during a long tick.
        self.on_progress = on_progress

    def defer(
        self, job: str, /, *, run_at: datetime | None = None, queueing_lock: str | None = None, **args: Any
    ) -> bool:
        return defer_job(
            self.store, self.registry, job, args, run_at=run_at or self.clock(), queueing_lock=queueing_lock
        )

    def _progress(self) -> None:
        if self.on_progress is not None:
            self.on_progress()

    def run_pending(self, now: datetime | None = None) -> int:
        """One tick: relay new outbox events, run due deliveries, periodic jobs, deferred jobs."""
        now = now or self.clock()
        ran = 0
        relay(self.store, self.registry, now, limit=self.batch * 5)
        with self.store.session() as session:
            delivery_ids = _lifecycle.due_ids(session, _DELIVERIES, now, self.batch)
        for delivery_id in delivery_ids:
            if deliver_one(self.store, self.registry, delivery_id, now, self.policy) is not None:
                ran += 1
            self._progress()
        mark_finished_events(self.store, now)
        ran += run_due_periodic(self.store, self.registry, now, self.policy)
        self._progress()
        # Deferred jobs last, so what a periodic sweep deferred runs in the same tick.
        with self.store.session() as session:
            job_ids = _lifecycle.due_ids(session, _JOBS, now, self.batch)
        for job_id in job_ids:
            if run_job(self.store, self.registry, job_id, now, self.policy) is not None:
                ran += 1
            self._progress()
        return ran
