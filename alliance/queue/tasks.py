"""The procrastinate App: every job of the registry as a task of the same name, plus the queue's upkeep.

- Registry jobs run as sync tasks (in procrastinate's threads) calling ``fn(store, **args)``.
- Retries: jobs deferred with a ``queueing_lock`` (syncs, periodic runs, coalesced work) get **no**
  procrastinate retry: a retry puts the job back to ``todo`` where it collides with a queued
  sibling's queueing lock and wedges the key forever (procrastinate #1446/#1543, reference/scale.md
  5.2 and 6.2). A failing sync is recorded on its connection instead, a periodic job's next tick
  is its retry. Other jobs keep the RetryPolicy semantics (backoff with jitter, max attempts).
- ``outbox.deliver_event`` runs the deliveries of one outbox event (core.jobs.outbox.deliver_event)
  and queues the event again for the next attempt of one that failed or is still claimed by a
  dead worker. ``outbox.deliver`` (one delivery) runs jobs queued by versions before it.
- Upkeep, as procrastinate periodic tasks (one run per period across all workers): the outbox
  sweep and the stalled-jobs reaper every minute, retention hourly (succeeded jobs deleted after
  7 days, failed ones after 30).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime
from functools import partial
from typing import Any

from procrastinate import App, BaseConnector, RetryDecision
from procrastinate.jobs import Job
from procrastinate.retry import BaseRetryStrategy
from sqlalchemy import select

from alliance.queue.backend import ProcrastinateBackend
from alliance.queue.periodic import TICK_ARG
from alliance.queue.reaper import reap_stalled
from alliance.queue.relay import DELIVER, DELIVER_EVENT, defer_delivery, defer_event, sweep
from core.jobs import DONE, PARKED, PENDING, RUNNING, JobRegistry, OutboxDelivery, RetryPolicy, deliver_one
from core.jobs.outbox import deliver_event
from core.jobs.periodic import mark_periodic_finished, mark_periodic_started, run_periodic_job
from core.store import Store

__all__ = [
    "FAILED_KEEP_DAYS",
    "REAP",
    "RETENTION",
    "SUCCEEDED_KEEP_DAYS",
    "SWEEP",
    "PolicyRetry",
    "build_app",
]

log = logging.getLogger(__name__)

SWEEP = "queue.sweep"
REAP = "queue.reap"
RETENTION = "queue.retention"
SUCCEEDED_KEEP_DAYS = 7
FAILED_KEEP_DAYS = 30
# What deliver_one returns for a delivery with nothing left to do: no next attempt to queue.
_FINISHED = frozenset({DONE, PARKED})


def _utcnow() -> datetime:
    return datetime.now(UTC)


class PolicyRetry(BaseRetryStrategy):
    """The embedded runner's RetryPolicy on procrastinate; never for a job holding a queueing lock."""

    def __init__(self, policy: RetryPolicy, clock: Callable[[], datetime] = _utcnow) -> None:
        self.policy = policy
        self.clock = clock

    def get_retry_decision(self, *, exception: BaseException, job: Job) -> RetryDecision | None:
        if job.queueing_lock is not None:
            return None
        failed_attempts = job.attempts + 1
        if failed_attempts >= self.policy.max_attempts:
            return None
        return RetryDecision(retry_at=self.clock() + self.policy.backoff(failed_attempts))


def _job_task(store: Store, name: str, fn: Callable[..., None], clock: Callable[[], datetime]) -> Callable[..., None]:
    def run(**args: Any) -> None:
        if TICK_ARG not in args:
            fn(store, **args)
            return
        # A periodic run (it carries its tick, alliance.queue.periodic): bookkept in periodic_jobs
        # as the embedded worker does (started, finished, last error; a failure is logged and the
        # next tick is its retry), so `alliance jobs status` reads the same on both queues.
        del args[TICK_ARG]
        mark_periodic_started(store, name, clock())
        error = run_periodic_job(store, name, partial(fn, store, **args))
        mark_periodic_finished(store, name, clock(), error)

    return run


def build_app(
    store: Store,
    registry: JobRegistry,
    policy: RetryPolicy,
    *,
    connector: BaseConnector,
    backend: ProcrastinateBackend,
    stale_seconds: float,
    clock: Callable[[], datetime] = _utcnow,
) -> App:
    """A procrastinate App running ``registry``'s jobs on ``store``."""
    app = App(connector=connector)
    retry = PolicyRetry(policy, clock)
    for name, fn in registry.jobs.items():
        app.task(name=name, retry=retry)(_job_task(store, name, fn, clock))

    @app.task(name=DELIVER_EVENT)
    def deliver_of_event(event_id: str, delivery_ids: list[int] | None = None) -> None:
        next_due = deliver_event(store, registry, event_id, clock, policy, delivery_ids)
        if next_due is not None:
            # Not all done (a handler failed and backs off, or a worker that died still holds its
            # claim, which runs out first as on the embedded runner): the event again, when due.
            with store.session() as session:
                defer_event(session, backend, event_id, None, next_due)

    @app.task(name=DELIVER)
    def deliver(delivery_id: int) -> None:
        status = deliver_one(store, registry, delivery_id, clock(), policy)
        if status in _FINISHED:  # the common case: no second look at the row (one transaction less)
            return
        # Not done yet (failed and backed off, or still claimed by a worker that died: its claim
        # runs out first, as on the embedded runner, so the handlers' own leases expire too):
        # queue the next attempt for when it is due.
        with store.session() as session:
            row = session.execute(
                select(OutboxDelivery.status, OutboxDelivery.next_attempt_at).where(OutboxDelivery.id == delivery_id)
            ).first()
            if row is not None and row.status in (PENDING, RUNNING):
                defer_delivery(session, backend, delivery_id, row.next_attempt_at)

    @app.periodic(cron="* * * * *", periodic_id=SWEEP)
    @app.task(name=SWEEP, queueing_lock=SWEEP)
    def outbox_sweep(timestamp: int) -> None:
        queued = sweep(store, registry, backend, clock())
        if queued:
            log.info("outbox sweep: %d delivery job(s) queued again", queued)

    @app.periodic(cron="* * * * *", periodic_id=REAP)
    @app.task(name=REAP, queueing_lock=REAP, pass_context=True)
    async def reap(context: Any, timestamp: int) -> None:
        counts = await reap_stalled(context.app.job_manager, stale_seconds=stale_seconds)
        if counts.retried or counts.failed:
            log.warning("reaper: %d stalled job(s) retried, %d finished as failed", counts.retried, counts.failed)

    @app.periodic(cron="17 * * * *", periodic_id=RETENTION)
    @app.task(name=RETENTION, queueing_lock=RETENTION, pass_context=True)
    async def retention(context: Any, timestamp: int) -> None:
        manager = context.app.job_manager
        await manager.delete_old_jobs(nb_hours=SUCCEEDED_KEEP_DAYS * 24)
        await manager.delete_old_jobs(
            nb_hours=FAILED_KEEP_DAYS * 24, include_failed=True, include_cancelled=True, include_aborted=True
        )

    return app
