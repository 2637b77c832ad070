"""Forgetting finished work: outbox events, their deliveries and deferred jobs that are done.

Every sync writes outbox rows and every row gets deliveries; left alone, these tables grow with
every change ever mirrored. Once an event is processed (all its deliveries done) and older than
the retention period, nothing reads it again: handlers are idempotent by event id only while a
delivery may still be retried, and a done delivery never is. Parked and pending work is never
pruned: it is either still to do or waiting for an operator (``alliance jobs failed``).

Rows go in batches, each its own short transaction, so a large backlog never holds SQLite's
write lock for long.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import delete, exists, select

from core.jobs.models import DONE, OutboxDelivery, QueuedJob
from core.store import OutboxEvent, Store

__all__ = ["PruneCounts", "prune_finished"]

BATCH = 2000


@dataclass(frozen=True)
class PruneCounts:
    events: int
    deliveries: int
    jobs: int


def prune_finished(store: Store, older_than: timedelta, *, now: datetime | None = None) -> PruneCounts:
    """Delete processed outbox events (with their deliveries) and done jobs finished before ``now - older_than``."""
    if older_than < timedelta(0):
        raise ValueError("older_than must not be negative")
    cutoff = (now or datetime.now(UTC)) - older_than
    events = deliveries = jobs = 0
    # processed_at is set only when every delivery is done; the check on open deliveries keeps an
    # event whose delivery an operator re-queued (``alliance jobs retry``) from vanishing under it.
    open_delivery = exists().where(OutboxDelivery.event_id == OutboxEvent.event_id, OutboxDelivery.status != DONE)
    while True:
        with store.session() as session:
            batch = list(
                session.scalars(
                    select(OutboxEvent.event_id)
                    .where(OutboxEvent.processed_at.is_not(None), OutboxEvent.processed_at < cutoff, ~open_delivery)
                    .order_by(OutboxEvent.id)
                    .limit(BATCH)
                )
            )
            if not batch:
                break
            deliveries += session.execute(delete(OutboxDelivery).where(OutboxDelivery.event_id.in_(batch))).rowcount  # type: ignore[attr-defined]
            events += session.execute(delete(OutboxEvent).where(OutboxEvent.event_id.in_(batch))).rowcount  # type: ignore[attr-defined]
    while True:
        with store.session() as session:
            ids = list(
                session.scalars(
                    select(QueuedJob.id)
                    .where(QueuedJob.status == DONE, QueuedJob.done_at < cutoff)
                    .order_by(QueuedJob.id)
                    .limit(BATCH)
                )
            )
            if not ids:
                break
            jobs += session.execute(delete(QueuedJob).where(QueuedJob.id.in_(ids))).rowcount  # type: ignore[attr-defined]
    return PruneCounts(events=events, deliveries=deliveries, jobs=jobs)
