"""What ``alliance jobs status`` shows: queued, running, failed and stalled jobs per family.

A family is a job name's first dotted part (``sync.connection`` -> ``sync``; outbox deliveries
are ``outbox``). On procrastinate a running job is stalled when its worker's heartbeat is older
than ``stale_seconds`` (the reaper's view); on the embedded queue when its claim ran out.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select, text

from core.jobs import PARKED, PENDING, RUNNING, OutboxDelivery, PeriodicJobState, QueuedJob
from core.store import Store

__all__ = ["FamilyCounts", "PeriodicRow", "embedded_counts", "periodic_rows", "procrastinate_counts"]


@dataclass
class FamilyCounts:
    family: str
    queued: int = 0
    running: int = 0
    failed: int = 0
    stalled: int = 0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _family(name: str) -> str:
    return name.split(".", 1)[0]


_PROCRASTINATE = text(
    """
    SELECT j.task_name,
           CASE WHEN j.status = 'doing'
                 AND (w.id IS NULL OR w.last_heartbeat < now() - make_interval(secs => :stale))
                THEN 'stalled' ELSE j.status::text END AS state,
           count(*)
      FROM procrastinate_jobs j
      LEFT JOIN procrastinate_workers w ON w.id = j.worker_id
     WHERE j.status IN ('todo', 'doing', 'failed')
     GROUP BY 1, 2
    """
)
_STATES = {"todo": "queued", "doing": "running", "failed": "failed", "stalled": "stalled"}


def _collect(rows: list[tuple[str, str, int]]) -> list[FamilyCounts]:
    families: dict[str, FamilyCounts] = defaultdict(lambda: FamilyCounts(""))
    for name, state, count in rows:
        family = _family(name)
        entry = families[family]
        entry.family = family
        setattr(entry, state, getattr(entry, state) + int(count))
    return sorted(families.values(), key=lambda f: f.family)


def procrastinate_counts(store: Store, *, stale_seconds: float) -> list[FamilyCounts]:
    """Per family, from procrastinate's tables (PostgreSQL)."""
    with store.engine.connect() as connection:
        rows = connection.execute(_PROCRASTINATE, {"stale": stale_seconds}).all()
    return _collect([(name, _STATES[state], count) for name, state, count in rows])


def _embedded_state(status: str, claim_running: bool) -> str:
    if status == PENDING:
        return "queued"
    if status == PARKED:
        return "failed"
    return "running" if claim_running else "stalled"


def embedded_counts(store: Store, now: datetime) -> list[FamilyCounts]:
    """Per family, from the embedded runner's tables (deliveries are the ``outbox`` family)."""
    open_states = (PENDING, RUNNING, PARKED)
    collected: list[tuple[str, str, int]] = []
    with store.session() as session:
        claim_running = QueuedJob.next_attempt_at > now
        jobs = session.execute(
            select(QueuedJob.job, QueuedJob.status, claim_running, func.count())
            .where(QueuedJob.status.in_(open_states))
            .group_by(QueuedJob.job, QueuedJob.status, claim_running)
        )
        collected += [(job, _embedded_state(status, running), count) for job, status, running, count in jobs]
        delivery_claim_running = OutboxDelivery.next_attempt_at > now
        deliveries = session.execute(
            select(OutboxDelivery.status, delivery_claim_running, func.count())
            .where(OutboxDelivery.status.in_(open_states))
            .group_by(OutboxDelivery.status, delivery_claim_running)
        )
        collected += [("outbox", _embedded_state(status, running), count) for status, running, count in deliveries]
    return _collect(collected)


@dataclass
class PeriodicRow:
    """One periodic job's record (``periodic_jobs``, kept by both queues)."""

    name: str
    next_run_at: datetime
    last_started_at: datetime | None
    last_finished_at: datetime | None
    last_error: str | None

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        for key in ("next_run_at", "last_started_at", "last_finished_at"):
            data[key] = data[key].isoformat() if data[key] is not None else None
        return data


def periodic_rows(store: Store) -> list[PeriodicRow]:
    """Every periodic job with its next run and how its last run went, by name."""
    with store.session() as session:
        states = session.scalars(select(PeriodicJobState).order_by(PeriodicJobState.name)).all()
        return [PeriodicRow(s.name, s.next_run_at, s.last_started_at, s.last_finished_at, s.last_error) for s in states]
